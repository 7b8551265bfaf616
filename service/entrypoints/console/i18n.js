// Every string of the page in Chinese and English. Chinese is the default; the choice is kept
// in the tab's sessionStorage. The buttons' accessible names stay English in both languages
// (aria-label in index.html) and the key and id fields' labels are `Reviewer key` and
// `Reviewer id` (a Chinese hint stands before them), so scripts and tests find them the same way.
const STRINGS = {
  zh: {
    title: "审核台", key_hint: "审核员密钥", id_hint: "审核员编号",
    sign_in: "进入", sign_out: "退出", queue: "待审队列", refresh: "刷新",
    col_application: "申请", col_user: "用户", col_product: "产品", col_amount: "金额",
    col_reasons: "原因代码", col_requested_by: "发起方", col_age: "等待时长", col_overdue: "超时",
    col_claim: "认领", queue_empty: "没有待审案件。", signed_out: "请输入审核员密钥和编号。",
    requested_by_rules: "规则", requested_by_applicant: "申请人", overdue_yes: "已超时",
    overdue_no: "未超时", unclaimed: "未认领", claimed_until: "至 {0}", not_given: "—",
    case: "案件 {0}", close: "关闭", claim: "认领", release: "释放认领", status: "状态",
    decided_at: "决定时间", outcome: "规则结果", applicant: "申请人数据", statement: "申请人陈述",
    no_request: "这个案件没有保存申请数据。",
    reasons: "原因", no_reasons: "无", trace: "规则轨迹", rule: "规则", passed: "通过",
    inputs: "输入", passed_yes: "✓ 通过", passed_no: "✗ 未通过", recourse: "补救方案",
    no_recourse: "无补救方案。", change_to: "{0} 改为 {1}", wait_until: "等到 {0}",
    gives: "结果：{0}", unreachable: "无法补救：{0}", notes: "备注", no_notes: "还没有备注。",
    note_label: "新备注", add_note: "添加备注", decide: "审核决定", codes: "拒绝原因代码",
    decision_note: "审核意见", approve: "批准", reject: "拒绝", loading: "加载中…",
    need_id: "请先填写审核员编号。", need_codes: "拒绝时至少选择一个原因代码。",
    need_text: "备注不能为空。", claimed: "已认领 {0}。", released: "已释放 {0}。",
    noted: "已添加备注。", approved: "{0} 已批准。", rejected: "{0} 已拒绝。",
    queue_loaded: "队列：{0} 个案件。", network: "无法连接服务：{0}", hours: "{0}小时{1}分",
    minutes: "{0}分", days: "{0}天{1}小时", starts_window: "（开启90天等待期）",
  },
  en: {
    title: "Reviewer console", key_hint: "", id_hint: "",
    sign_in: "Sign in", sign_out: "Sign out", queue: "Pending cases", refresh: "Refresh",
    col_application: "Application", col_user: "User", col_product: "Product", col_amount: "Amount",
    col_reasons: "Reason codes", col_requested_by: "Requested by", col_age: "Waiting",
    col_overdue: "Overdue", col_claim: "Claim", queue_empty: "No pending cases.",
    signed_out: "Enter your reviewer key and reviewer id.", requested_by_rules: "rules",
    requested_by_applicant: "applicant", overdue_yes: "overdue", overdue_no: "on time",
    unclaimed: "unclaimed", claimed_until: "until {0}", not_given: "—", case: "Case {0}",
    close: "Close", claim: "Claim", release: "Release", status: "Status", decided_at: "Decided at",
    outcome: "Rules' outcome", applicant: "Applicant's data", statement: "Applicant's statement",
    no_request: "This case holds no request data.",
    reasons: "Reasons", no_reasons: "none", trace: "Trace", rule: "Rule", passed: "Passed",
    inputs: "Inputs", passed_yes: "✓ passed", passed_no: "✗ failed", recourse: "Recourse",
    no_recourse: "No recourse.", change_to: "{0} to {1}", wait_until: "wait until {0}",
    gives: "gives: {0}", unreachable: "Unreachable: {0}", notes: "Notes", no_notes: "No notes yet.",
    note_label: "New note", add_note: "Add note", decide: "Decision", codes: "Reason codes for a rejection",
    decision_note: "Decision note", approve: "Approve", reject: "Reject", loading: "Loading…",
    need_id: "Enter your reviewer id first.", need_codes: "Pick at least one reason code to reject.",
    need_text: "A note cannot be empty.", claimed: "Claimed {0}.", released: "Released {0}.",
    noted: "Note added.", approved: "{0} approved.", rejected: "{0} rejected.",
    queue_loaded: "Queue: {0} case(s).", network: "The service cannot be reached: {0}",
    hours: "{0}h {1}m", minutes: "{0}m", days: "{0}d {1}h", starts_window: " (opens the 90-day window)",
  },
};
const STORE = "console.lang";

export function lang() {
  return sessionStorage.getItem(STORE) === "en" ? "en" : "zh";
}

export function setLang(name) {
  sessionStorage.setItem(STORE, name === "en" ? "en" : "zh");
}

export function t(key, ...args) {
  const text = STRINGS[lang()][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\d)\}/g, (_, i) => String(args[Number(i)] ?? ""));
}

// Fill every element marked data-i18n (its text) in `root`.
export function applyStrings(root = document) {
  document.documentElement.lang = lang() === "en" ? "en" : "zh-CN";
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  document.title = t("title");
}
