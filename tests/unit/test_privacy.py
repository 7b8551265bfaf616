"""Masking of text a person typed (an audit reason): numbers as the log masks them, and a name
after a word that announces one."""
import pytest

from service.domain.privacy import mask, mask_free_text


@pytest.mark.parametrize("text, shown", [
    ("user 13912345678 asked (PIPL), name 王小明", "user 139****5678 asked (PIPL), name 王**"),
    ("姓名：王小明，身份证110101199003071234", "姓名：王**，身份证110101********1234"),
    ("本人叫王小明，要求删除", "本人叫王**，要求删除"),
    ("名字是李四", "名字是李*"),
    ("Name: Zhang San. Asked by phone", "Name: Z********. Asked by phone"),
    ("customer named Li Lei , by letter", "customer named L***** , by letter"),
    ("user_name=bob; ok", "user_name=b**; ok"),
    ("PIPL art. 47 request", "PIPL art. 47 request"),
    ("rename; username bob", "rename; username bob"),   # no marker: a word holding one is not one
    ("the name", "the name"),
])
def test_mask_free_text(text, shown):
    assert mask_free_text(text) == shown


def test_free_text_masks_every_number_the_log_masks():
    for text in ("tel +86 138-1234-5678", "id 11010119900307123X", "old 110101900307123"):
        assert mask_free_text(text) == mask(text) != text
