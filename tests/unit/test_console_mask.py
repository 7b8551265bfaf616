"""The console masks in the browser (mask.js) what the service masks in its log
(service.domain.privacy): the same text in, the same text out. Runs mask.js under Node when it is
installed; the browser test checks the page itself."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from service.domain.privacy import mask, mask_value
from service.entrypoints.http import console

NODE = shutil.which("node")
SAMPLES = [
    "13812345678", "+86 139-1234-5678", "0086 13912345678", "8613912345678", "u13812345678",
    "电话13812345678。", "110101199003071234", "身份证11010119900307123X号", "110101900307123",
    "1101011990030712345", "23812345678", "12345678", "no digits", "1381234567", "138 1234 5678",
    "ids 110101199003071234 and 110101900307123 and 13812345678",
    "١٣٨١٢٣٤٥٦٧٨",   # Arabic-Indic digits: Python's \\d matches them, so \\p{Nd} in mask.js does
]
VALUES = [("name", "王小明"), ("real_name", "Li"), ("statement", "call 13812345678"),
          ("applicant", {"contact_name": "张三", "note": "110101199003071234", "n": 5}),
          ("groups", ["13812345678", "x"]), ("age", 30), ("flag", None)]


@pytest.mark.skipif(NODE is None, reason="node is not installed: mask.js is checked in the browser test only")
def test_mask_js_masks_as_the_service_masks(tmp_path):
    module = tmp_path / "mask.mjs"
    module.write_text((console.FILES / "mask.js").read_text())
    script = (f"import {{ mask, maskValue }} from {json.dumps(module.as_uri())};\n"
              f"const texts = {json.dumps(SAMPLES)}; const values = {json.dumps(VALUES)};\n"
              "console.log(JSON.stringify([texts.map(mask), values.map(([k, v]) => maskValue(k, v))]));")
    out = subprocess.run([NODE, "--input-type=module", "-e", script], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    texts, values = json.loads(out)
    assert texts == [mask(text) for text in SAMPLES]
    assert values == [mask_value(key, value) for key, value in VALUES]
