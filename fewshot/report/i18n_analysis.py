"""The qualitative analysis' prose (:mod:`fewshot.report.analysis_text`, :mod:`fewshot.report.analysis_report`)
in each report language: string templates, one per sentence, merged into :mod:`fewshot.report.i18n`'s
``EN`` and ``ZH`` (read them through :func:`fewshot.report.i18n.tr`). Numbers, class names and method
names are filled in by the caller, already formatted, so every language states the same figures.
"""
from __future__ import annotations

__all__ = ["EN", "ZH"]

EN = {
    "a_sep": " ",  # between two sentences
    # analysis_section: headings and the section's head
    "a_t_confusions": "Most confused classes",
    "a_t_gain": "Per-class gain over zero-shot",
    "a_t_failures": "Failure gallery ({k} shots)",
    "a_t_features": "Features and {m}'s cache keys before and after fine-tuning",
    "a_t_cache": "How {m}'s cache decides ({k} shots)",
    "a_head": "The method shown is **{m}**, {why}; set `report_method` in the config to show another. "
              "Every figure is on val, split seed {seed}, at {shots} shots; every paragraph is computed "
              "from the numbers it describes.",
    "a_why_chosen": "as chosen (report_method)",
    "a_why_best": "the best learnable method at {k} shots by mean val top-1 ({mean} %, {how}) among "
                  "{n} kept{tied}",
    "a_why_honest": "not tuned on test",
    "a_why_oracle": "tuned on test (oracle run)",
    "a_why_tied": "; tied with {named} within the seeds' spread, so shown as the first in the registry",
    "a_why_item": "{m} ({mean} %)",
    "a_cw_course": "[coursework] is the course notebook's figure (ImageNet, RN50, 1 template, tuned on test).",
    "a_cw_none": "The coursework's ImageNet/RN50 numbers (fewshot/reference.json) are set beside ours "
                 "only for a run on ImageNet with CLIP RN50; this run is not one.",
    # confusion_text
    "a_conf_none": "At {k} shots {m} makes no mistake on val.",
    "a_conf_pair": "At {shots} the most confused pair is {a} ↔ {b} ({ab} + {ba} val images); the {n} "
                   "pairs shown hold {share} % of its {errors} mistakes.",
    "a_conf_twins": "Classes {a} and {b} share the name '{name}' (a label ambiguity of the dataset): "
                    "zero-shot, which only has the names, mixes them up {z} times; {m} {counts}, {verdict}",
    "a_conf_twin_count": "{n} times at {shots}",
    "a_conf_twin_apart": "so the images separate what the names cannot.",
    "a_conf_twin_alike": "so their images look alike too.",
    "a_conf_lasting": "{a} ↔ {b} stays among the top pairs at every shot count (more shots do not "
                      "separate them); zero-shot confuses it {z} times, so the confusion {why}.",
    "a_conf_in_clip": "is already in CLIP’s features and prompts",
    "a_conf_from_shots": "comes with the shots",
    "a_conf_no_lasting": "No pair stays on top at every shot count: the shots change which classes "
                         "are confused, rather than leaving one hard pair.",
    # feature_text
    "a_feat_k": "At {shots} fine-tuning turns the keys by a median 1 − cos = {shift}, {verdict} their "
                "own class's test images (mean cosine {own0} → {own}; keys nearer their own class's "
                "mean test feature than any other's: {before} % → {after} %), and changes their "
                "lengths from 1 to {lo}–{hi} (mean {mean}).",
    "a_feat_closer": "closer to",
    "a_feat_further": "further from",
    "a_feat_spread": "Since the affinity exp(−β(1 − f·k)) grows with a key's length (above 1 once "
                     "f·k > 1), fine-tuning at {ks} shots reweights the shots as much as it turns "
                     "them: a long key can outvote nearer shots of the right class (see the next figure).",
    "a_feat_share": "The picture is a projection: its two axes hold {share} % or more of the kept val "
                    "features' variance, so classes that overlap here may still be apart in the full space.",
    # explanation_text
    "a_expl_image": "A {y} image ({kind}): zero-shot says {zs} ({pzs}); {same} of its {n} nearest shots "
                    "are {y} (the nearest a {near}, affinity {a0} → {a1}); the cache adds {cache} to the "
                    "text logit {text} of {top}, so {m} says {top} ({pad}).",
    "a_kind_fixed": "fixed", "a_kind_broken": "broken",
    "a_kind_both_wrong": "both wrong", "a_kind_both_right": "both right",
    "a_expl_agree": "Where {m} is right, {right} % of the nearest shots share the image's class; where "
                    "it is wrong, {wrong} %: the decision follows the neighbours in the cache.",
    # failure_text
    "a_fail_none": "{m} makes no mistake on val at {k} shots.",
    "a_fail_main": "At {k} shots {m} gets {wrong} of {n} val images wrong ({pct} %); for {in3} % of "
                   "them the true class is second or third. Its mean top-1 probability is {cw} on "
                   "mistakes against {cr} on correct answers, {calib}.",
    "a_fail_calib_ok": "so on average its confidence is a usable warning",
    "a_fail_calib_bad": "so a wrong answer looks almost as sure as a right one",
    "a_fail_shown": " The mistakes shown are its most confident ones (top-1 probability {lo}–{hi}): "
                    "on those it warns of nothing.",
    "a_fail_twin": " {same} of the {n} most confident mistakes shown pick a class with the same name "
                   "as the true one: label ambiguity, not a failure of the method.",
    # gain_text
    "a_gain_k": "At {shots} {up} classes gain and {down} lose (mean {mean} points); most gained: {top}.",
    "a_gain_item": "{c} ({base} → {acc} %)",
    "a_gain_falls": " Gain falls with zero-shot accuracy (Pearson r = {r}): the shots help most where "
                    "the text prompts were weakest.",
    "a_gain_unrelated": " Gain and zero-shot accuracy are hardly related (r = {r}).",
    "a_gain_losers": " The classes that lose most ({cs}) stood at {base} % zero-shot on average.",
}

ZH = {
    "a_sep": "",
    "a_t_confusions": "最易混淆的类别",
    "a_t_gain": "相对零样本的逐类提升",
    "a_t_failures": "错误样例（每类 {k} 个样本）",
    "a_t_features": "特征与 {m} 的缓存键：微调前后",
    "a_t_cache": "{m} 的缓存如何决策（每类 {k} 个样本）",
    "a_head": "图中展示的方法是 **{m}**，{why}；在配置中设置 `report_method` 可展示其他方法。每张图都基于 "
              "val（划分种子 {seed}），每类 {shots} 个样本；每段文字都由它所描述的数字计算得出。",
    "a_why_chosen": "由配置指定（report_method）",
    "a_why_best": "它是每类 {k} 个样本时 val 平均 top-1 最高的可学习方法（{mean} %，{how}），共保留 {n} 个方法{tied}",
    "a_why_honest": "未在测试集上调参",
    "a_why_oracle": "在测试集上调参（oracle 运行）",
    "a_why_tied": "；与 {named} 的差距在种子间波动之内，因此展示注册表中靠前的那个",
    "a_why_item": "{m}（{mean} %）",
    "a_cw_course": "[coursework] 为课程 notebook 的数字（ImageNet，RN50，1 个模板，在测试集上调参）。",
    "a_cw_none": "课程的 ImageNet/RN50 数字（fewshot/reference.json）只在使用 CLIP RN50 的 ImageNet 运行中"
                 "与我们的数字并列；本次运行不是。",
    "a_conf_none": "每类 {k} 个样本时，{m} 在 val 上没有出错。",
    "a_conf_pair": "每类 {shots}时，最易混淆的一对是 {a} ↔ {b}（{ab} + {ba} 张 val 图像）；图中的 {n} 对占其 "
                   "{errors} 个错误的 {share} %。",
    "a_conf_twins": "类别 {a} 和 {b} 同名 '{name}'（数据集的标签歧义）：只有类名可用的零样本把它们混淆了 {z} 次；"
                    "{m} 则为{counts}，{verdict}",
    "a_conf_twin_count": "每类 {shots}时 {n} 次",
    "a_conf_twin_apart": "说明图像能区分类名区分不了的类别。",
    "a_conf_twin_alike": "说明它们的图像也很相似。",
    "a_conf_lasting": "{a} ↔ {b} 在每个样本数下都位列最易混淆的几对（更多样本也分不开它们）；零样本混淆它们 "
                      "{z} 次，所以这种混淆{why}。",
    "a_conf_in_clip": "已存在于 CLIP 的特征和提示词中",
    "a_conf_from_shots": "是随训练样本而来的",
    "a_conf_no_lasting": "没有哪一对在每个样本数下都排在前列：样本改变的是哪些类别被混淆，而不是留下一对难分的类别。",
    "a_feat_k": "每类 {shots}时，微调使缓存键转动的中位数为 1 − cos = {shift}，{verdict}本类的测试图像（平均余弦 "
                "{own0} → {own}；离本类测试特征均值比离其他任何类都近的键：{before} % → {after} %），"
                "并把键的长度从 1 变为 {lo}–{hi}（平均 {mean}）。",
    "a_feat_closer": "更靠近",
    "a_feat_further": "更远离",
    "a_feat_spread": "由于亲和度 exp(−β(1 − f·k)) 随键的长度增大（f·k > 1 时超过 1），每类 {ks} 个样本时的微调"
                     "既转动了样本，也同样程度地重新加权了样本：一个长的键可能压过正确类别中更近的样本（见下一张图）。",
    "a_feat_share": "此图是一个投影：它的两个轴至少包含保留的 val 特征方差的 {share} %，因此在这里重叠的类别"
                    "在完整空间中仍可能是分开的。",
    "a_expl_image": "一张 {y} 图像（{kind}）：零样本判为 {zs}（{pzs}）；它最近的 {n} 个样本中有 {same} 个是 {y}"
                    "（最近的是 {near}，亲和度 {a0} → {a1}）；缓存在 {top} 的文本 logit {text} 上加了 {cache}，"
                    "所以 {m} 判为 {top}（{pad}）。",
    "a_kind_fixed": "被纠正", "a_kind_broken": "被弄错",
    "a_kind_both_wrong": "两者都错", "a_kind_both_right": "两者都对",
    "a_expl_agree": "{m} 判对时，最近的样本中有 {right} % 与图像同类；判错时为 {wrong} %：决策跟随缓存中的近邻。",
    "a_fail_none": "每类 {k} 个样本时，{m} 在 val 上没有出错。",
    "a_fail_main": "每类 {k} 个样本时，{m} 在 {n} 张 val 图像中错了 {wrong} 张（{pct} %）；其中 {in3} % 的真实类别"
                   "排在第二或第三。它的平均 top-1 概率在错误答案上为 {cw}，在正确答案上为 {cr}，{calib}。",
    "a_fail_calib_ok": "所以平均而言它的置信度是可用的警示",
    "a_fail_calib_bad": "所以错误答案看起来几乎和正确答案一样确定",
    "a_fail_shown": "图中的错误是它最自信的那些（top-1 概率 {lo}–{hi}）：在这些图像上它毫无警示。",
    "a_fail_twin": "图中 {n} 个最自信的错误里有 {same} 个选了与真实类别同名的类别：这是标签歧义，不是方法的失败。",
    "a_gain_k": "每类 {shots}时，{up} 个类别提升，{down} 个下降（平均 {mean} 个百分点）；提升最多的：{top}。",
    "a_gain_item": "{c}（{base} → {acc} %）",
    "a_gain_falls": "提升随零样本准确率升高而减小（Pearson r = {r}）：文本提示最弱的地方，样本帮助最大。",
    "a_gain_unrelated": "提升与零样本准确率几乎无关（r = {r}）。",
    "a_gain_losers": "下降最多的类别（{cs}）零样本准确率平均为 {base} %。",
}
