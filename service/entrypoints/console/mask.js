// Personal data masked before it reaches the page, the way the service masks its log
// (service/domain/privacy.py): an 18-digit PRC ID keeps its first 6 and last 4 characters, a
// 15-digit one its first 6 and last 3, a mainland mobile number its prefix, first 3 and last 4
// digits; a name field keeps its first character. \p{Nd} is Python's \d: any decimal digit.
const D = "\\p{Nd}";
const ID_NUMBER = new RegExp(`(?<!${D})(${D}{6})${D}{8}(${D}{3}[${D}Xx])(?![${D}Xx])`, "gu");
const OLD_ID_NUMBER = new RegExp(`(?<!${D})(${D}{6})${D}{6}(${D}{3})(?!${D})`, "gu");
const PHONE = new RegExp(
  `(?<!${D})((?:\\+|00)?86[ -]?)?(1[3-9]${D})[ -]?${D}{4}[ -]?(${D}{4})(?!${D})`, "gu");
const NAME_KEYS = new Set(["name", "full_name", "real_name", "applicant_name", "customer_name",
  "contact_name", "holder_name", "user_name"]);

export function mask(text) {
  return String(text)
    .replace(ID_NUMBER, (_, head, tail) => `${head}********${tail}`)
    .replace(OLD_ID_NUMBER, (_, head, tail) => `${head}******${tail}`)
    .replace(PHONE, (_, prefix, head, tail) => `${prefix || ""}${head}****${tail}`);
}

function maskName(name) {
  const chars = Array.from(name);
  return chars[0] + "*".repeat(chars.length - 1);
}

// A value under `key`, masked as privacy.mask_value masks it (nested values too).
export function maskValue(key, value) {
  if (NAME_KEYS.has(key) && typeof value === "string" && value) return maskName(value);
  if (typeof value === "string") return mask(value);
  if (Array.isArray(value)) return value.map((v) => maskValue(key, v));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskValue(k, v)]));
  }
  return value;
}
