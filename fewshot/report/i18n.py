"""The report's prose in each language it is written in: string templates, one per sentence.

Numbers and method names are filled in by the caller (:mod:`fewshot.report.narrative`,
:mod:`fewshot.report.captions`, :mod:`fewshot.report.build`; the analysis' in
:mod:`fewshot.report.i18n_analysis`), so every language states the same figures.
"""
from __future__ import annotations

from fewshot.base.errors import ConfigError
from fewshot.report.i18n_analysis import EN as _EN_ANALYSIS, ZH as _ZH_ANALYSIS

__all__ = ["tr", "join", "list_languages", "EN", "ZH"]

EN = {
    # summary
    "oracle_run": "**This is an oracle run**: hyperparameters were chosen on the test set, as the "
                  "coursework notebook and the official scripts do; its numbers are optimistic.",
    "chance": "**Zero-shot accuracy is at chance** ({zs} % against 1/{c} = {chance} %): the backbone "
              "does not recognise these classes (random or wrong weights, or class names that do not "
              "match the folders), so every difference below is noise.",
    "zero_shot": "Zero-shot CLIP reaches {zs} % top-1 on val{extra}, with no training image.",
    "zero_shot_extra": " ({v} % on {s})",
    "best": "With {k} per class the best method is **{m}** ({a}{gain}), ahead of {m2} ({b}) "
            "by {d} points, more than {noise}.",
    "tied": "With {k} per class no single method is best: **{m}** tied with {others} "
            "({vals}); the differences are within {noise}.",
    "gain": ", {d} points over zero-shot",
    "noise_std": "the seeds' spread (std)",
    "noise_std_se": "the seeds' spread (std) and the test set's sampling error (±{se} points for {n} images)",
    "one_seed": " (on one seed only: the seeds' spread is unknown)",
    "noise_se": "the test set's sampling error (±{se} points for {n} images)",
    "noise_none": "a spread it could be measured against (none here: one seed, test-set size unknown)",
    "below_zs": " Below zero-shot: {ms}.",
    "shift": "Under distribution shift the picture changes: at {k}, {ms} {beat} zero-shot on "
             "val but {fall} below it on {s}.",
    "shift_verbs": "beats|falls|beat|fall",
    "honesty": "Tuning on the test set (the oracle run) adds {d} points on average over the methods "
               "both runs share: the cost of honesty.",
    "k_shot": "{k} shot",
    "k_shots": "{k} shots",
    # report frame
    "title": "Few-shot CLIP report",
    "intro": "Built by `python -m fewshot report` from `{run}` alone; the same report as one file "
             "to hand in: [report.html](report.html). Sections: {sections}.",
    "h_summary": "Summary",
    "h_setup": "Setup",
    "h_leaderboard": "Leaderboard",
    "h_tables": "Top-1 on the shifted test sets",
    "h_accuracy": "Accuracy against shots",
    "h_robustness": "Robustness: in- vs out-of-distribution",
    "h_tip": "Tip-Adapter hyperparameters",
    "h_tip_f": "Tip-Adapter-F training",
    "h_wise": "WiSE-FT paths",
    "h_costs": "What fine-tuning costs",
    "h_examples": "Qualitative examples",
    "h_analysis": "Qualitative analysis",
    "analysis_missing": "This run kept no data for the qualitative analysis: rerun its zeroshot and method steps, then build the report again.",
    "h_merging": "Merging several fine-tuned encoders",
    "h_published": "Published numbers (for comparison)",
    "h_shift": "Top-1 (%) on {s}, mean ± std over seeds",
    "proto_oracle": "oracle: tuned on test",
    "proto_honest": "no tuning on test (from the shots: leave-one-out, cross-validation or held-out "
                    "shots; published defaults where the shots cannot tell)",
    "pub_none": "Published ImageNet/RN50 numbers are shown only for runs on ImageNet with CLIP RN50; "
                "this run used other data or another model, so they would not be comparable.",
    "lb_note": "Mean ± std over seeds, top-1 (%) on val; zero-shot, which uses no shot, is repeated "
               "in every column.",
    "lb_pub": " [pub.] is the published figure (ImageNet, RN50; tuned on test: see the last section).",
    "lb_oracle": " (oracle) is the same method with its hyperparameters tuned on test.",
    "missing": "This run holds no results for this section (its step has not run).",
    "partial": "**Partial run: this report lacks the results of {steps}.** Run those steps "
               "(the notebooks, or `python -m fewshot run --steps {names}`) and build the report again.",
    "t_cached": "methods on cached features",
    "t_tuned": "fine-tuning the encoders and prompts",
    "how_oracle": "on the test set itself (oracle run: the coursework's protocol)",
    "how_honest": "without test data (leave-one-out on the shots)",
    "how_default": "from the published defaults",
    "merge_intro": "A study of its own, on the merge tasks' test sets (not shifts of val): one "
                   "expert encoder per task, merged by each rule; λ chosen on the held-out shots of "
                   "every task (oracle rows: on test). Top-1 (%) on each task's test set.",
    "merge_soup": "A soup of one task's experts from different seeds, beside WiSE-FT (α = 0.5) of "
                  "one of them:",
    "cap_cos": "Cosine similarity between the task vectors (fine-tuned minus pre-trained weights) "
               "of the experts: {parts}.",
    "cap_cos_part": "{s} fine-tuning: mean {mean} and largest {max} between two tasks",
    "merge_generalisation": "Generalisation (FusionBench's experiment): the experts of three tasks merged, "
                            "evaluated on those (seen) and on the tasks none of them was trained on "
                            "(unseen); λ chosen on the seen tasks' held-out shots. Full fine-tuning, top-1 (%):",
    "merge_cross": "Each expert on every task (FusionBench's cross-task matrix), top-1 (%), the expert's "
                   "own task in bold; full fine-tuning:",
    "merge_robustness": "Robustness (FusionBench's experiment): the merged encoders on every task's test images, "
                        "clean and under seven corruptions (severity 5), top-1 (%) averaged over the tasks:",
    "cap_adaptive": "What the adaptive rules learned on the tasks' unlabeled images: AdaMerging's λ per expert "
                    "and tensor (left), the share of each tensor's task-vector entries Concrete's mask keeps (right).",
    "cap_routing": "WEMoE's routers on each task's test images: the mean weight per expert, over the MoE layers; "
                   "an image's own task's expert gets {own} on average, each other expert {other}.",
    "cap_cross": "Each expert's top-1 on every task minus the pre-trained encoder's there (points): "
                 "{parts}.",
    "cap_cross_part": "{s} fine-tuning: {own} on its own task and {other} on the others on average",
    "cap_lambda": "Mean top-1 over the tasks against the merge coefficient λ, on the held-out "
                  "shots (which choose λ) and on test: {parts}; a λ chosen on test is shown for "
                  "illustration only.",
    "cap_lambda_part": "{m}: held-out shots pick λ = {held} ({vh} % on test), test would pick "
                       "{test} ({vt} %)",
    # captions
    "figure": "Figure {n}.",
    "cap_accuracy": "Top-1 (%) against shots per class on {sets} (mean over seeds; bars: std) for "
                    "{n} methods; dashed: zero-shot, which uses no shot.",
    "cap_on_set": "On {s}: ",
    "cap_grid": "Tip-Adapter's top-1 over the searched grid (α from {a0} to {a1}, β from {b0} to "
                "{b1}) at {k}, seed {seed}: × is the point chosen {how}, ○ each panel's optimum. "
                "On test, the chosen point gives {chosen} % against the test optimum's {best} % "
                "({d} points left on the table without looking at test).",
    "edge_largest": "largest {p}",
    "edge_smallest": "smallest {p}",
    "cap_grid_edge": "**The test optimum lies on the edge of the searched range** ({where}) at "
                     "{n} of {total} shot counts ({ks} shots): the range is too small to show "
                     "where the accuracy peaks.",
    "cap_training": "Tip-Adapter-F's training loss and accuracy on the augmented views per epoch "
                    "(seed {seed}), one line per shot count. Last epoch: {parts}.",
    "cap_training_over": " At {ks} the training accuracy ends more than 5 points above val: the "
                         "adapter fits its shots better than it generalises.",
    "cap_training_ok": " At no shot count does the training accuracy end more than 5 points above "
                       "val (the views are augmented, so this is no sign of overfitting).",
    "cap_training_part": "{k}: {train} % on the shots, {val} % on val",
    "cap_path": "Top-1 (%) along the {m} path at {k} on {sets} (mean over seeds), from the starting "
                "model (0) to the fine-tuned one (1); dotted: the coefficient chosen on the shots "
                "per seed ({chosen}), which gives {got}.",
    "cap_path_inside": "Chosen on test, for illustration only: the mix {best} gives the best mean "
                       "over the sets ({v} %), {d} points over the better end, more than the "
                       "seeds' spread (±{s}).",
    "cap_path_flat": "Chosen on test, for illustration only: no mix beats both ends by more than "
                     "the seeds' spread (best mean {v} % at {best}; ends {lo} % and {hi} %; "
                     "{d} points against ±{s}).",
    "cap_path_one": "Chosen on test, for illustration only, on one seed (its spread unknown): "
                    "the best mean over the sets is {v} % at {best} ({d} points against the "
                    "better end; ends {lo} % and {hi} %).",
    "cap_idood": "Val top-1 (in distribution) against the mean top-1 on {sets} (out of "
                 "distribution) at {k}: lines are WiSE-FT paths from 0 to 1, points the other "
                 "methods, the star zero-shot.",
    "cap_idood_both": "Against zero-shot ({zx} %, {zy} %), {n} of {total} methods gain on both "
                      "axes; the best out of distribution is {m} ({x} %, {y} %).",
    "cap_costs": "Trainable parameters and seconds per fine-tuning run for each strategy, with "
                 "its val top-1: {parts}.",
    "cap_costs_part": "{m} trains {p} parameters in {t} s and reaches {a} %",
    "cap_examples": "Val images with the zero-shot and {m} predictions ({k}, seed {seed}; green: "
                    "right, red: wrong), those where the two disagree first. Over all {n} val "
                    "images, {m} fixes {fixed} zero-shot errors and breaks {broken} correct "
                    "answers ({net} points).",
    "cap_classes": "Per-class top-1 change of {m} against zero-shot, the ten classes that lose and "
                   "the ten that gain most: {gain} classes gain, {lose} lose, {same} are unchanged "
                   "(median change {med} points).",
    "no_results": "No per-shot results in this run; see the sections below.",
    "and": " and ",
    "list_sep": ", ",
    "more": "{n} more",
}

ZH = {
    "oracle_run": "**这是一次 oracle 运行**：超参数在测试集上选择（与课程 notebook 和官方脚本相同），"
                  "因此数字偏乐观。",
    "chance": "**零样本准确率处于随机水平**（{zs} %，随机猜测为 1/{c} = {chance} %）：骨干网络认不出这些类别"
              "（权重随机或错误，或类名与文件夹不符），下面的所有差异都只是噪声。",
    "zero_shot": "零样本 CLIP 在 val 上的 top-1 为 {zs} %{extra}，不使用任何训练图像。",
    "zero_shot_extra": "（在 {s} 上为 {v} %）",
    "best": "每类 {k} 时最好的方法是 **{m}**（{a}{gain}），领先第二名 {m2}（{b}）{d} 个百分点，超过{noise}。",
    "tied": "每类 {k} 时没有唯一最好的方法：**{m}** 与 {others} 持平（{vals}）；差异在{noise}之内。",
    "gain": "，比零样本高 {d} 个百分点",
    "noise_std": "各种子间的波动（标准差）",
    "noise_std_se": "各种子间的波动（标准差）和测试集的抽样误差（{n} 张图像时为 ±{se} 个百分点）",
    "noise_se": "测试集的抽样误差（{n} 张图像时为 ±{se} 个百分点）",
    "noise_none": "可测量的噪声（无：只有一个种子，测试集大小未知）",
    "one_seed": "（仅一个种子：种子间的波动未知）",
    "below_zs": "低于零样本的方法：{ms}。",
    "shift": "分布偏移下情况不同：每类 {k} 时，{ms} 在 val 上{beat}零样本，但在 {s} 上{fall}零样本。",
    "shift_verbs": "超过|低于|超过|低于",
    "honesty": "在测试集上调参（oracle 运行）在两次运行共有的方法上平均多出 {d} 个百分点：这是诚实的代价。",
    "k_shot": "{k} 个样本", "k_shots": "{k} 个样本",
    "and": " 和 ", "list_sep": "、", "more": "另外 {n} 个",
    "title": "小样本 CLIP 报告",
    "intro": "由 `python -m fewshot report` 仅根据 `{run}` 生成；可提交的单文件版本：[report.html](report.html)。"
             "章节：{sections}。",
    "h_summary": "摘要", "h_setup": "实验设置", "h_leaderboard": "排行榜", "h_tables": "偏移测试集上的 top-1",
    "h_accuracy": "准确率与样本数", "h_robustness": "鲁棒性：分布内与分布外", "h_tip": "Tip-Adapter 超参数",
    "h_tip_f": "Tip-Adapter-F 训练", "h_wise": "WiSE-FT 路径", "h_costs": "微调的代价",
    "h_examples": "定性示例", "h_analysis": "定性分析",
    "analysis_missing": "本次运行没有保存定性分析所需的数据：请重新运行 zeroshot 及各方法步骤后再生成报告。",
    "h_merging": "合并多个微调编码器", "h_published": "已发表的数字（供比较）",
    "h_shift": "{s} 上的 top-1 (%)，各种子的均值 ± 标准差",
    "proto_oracle": "oracle：在测试集上调参",
    "proto_honest": "不在测试集上调参（只用训练样本：留一法、交叉验证或留出样本；样本无法判断时用已发表的默认值）",
    "pub_none": "只有在 ImageNet 上使用 CLIP RN50 的运行才显示已发表的 ImageNet/RN50 数字；本次运行使用了"
                "其他数据或模型，无法比较。",
    "lb_note": "val 上的 top-1 (%)，各种子的均值 ± 标准差；零样本不使用样本，每一列都重复它的数字。",
    "lb_pub": " [pub.] 为已发表的数字（ImageNet，RN50；在测试集上调参：见最后一节）。",
    "lb_oracle": " (oracle) 为同一方法在测试集上调参的结果。",
    "missing": "本次运行没有这一节的结果（对应步骤尚未运行）。",
    "partial": "**运行不完整：本报告缺少 {steps} 的结果。** 请运行这些步骤（相应的笔记本，或 "
               "`python -m fewshot run --steps {names}`）后重新生成报告。",
    "t_cached": "methods on cached features", "t_tuned": "fine-tuning the encoders and prompts",
    "how_oracle": "在测试集上（oracle 运行：课程的协议）", "how_honest": "不使用测试数据（在训练样本上留一法）",
    "how_default": "来自已发表的默认值",
    "merge_intro": "一项独立的研究，使用各合并任务自己的测试集（不是 val 的偏移）：每个任务一个专家编码器，"
                   "用各规则合并；λ 在每个任务的留出样本上选择（oracle 行：在测试集上）。各任务测试集上的 top-1 (%)。",
    "merge_soup": "同一任务不同种子专家的 soup，与其中一个专家的 WiSE-FT（α = 0.5）对比：",
    "cap_cos": "各专家任务向量（微调权重减去预训练权重）之间的余弦相似度：{parts}。",
    "cap_cos_part": "{s} 微调：两任务间平均 {mean}，最大 {max}",
    "merge_generalisation": "泛化（FusionBench 的实验）：合并三个任务的专家，在这些（见过的）任务和没有任何专家训练过的"
                            "（未见过的）任务上评估；λ 在见过任务的留出样本上选择。完全微调，top-1 (%)：",
    "merge_cross": "每个专家在每个任务上的表现（FusionBench 的跨任务矩阵），top-1 (%)，专家自己的任务加粗；完全微调：",
    "merge_robustness": "鲁棒性（FusionBench 的实验）：合并后的编码器在各任务测试图像上的表现，干净图像与七种损坏"
                        "（强度 5），各任务平均的 top-1 (%)：",
    "cap_adaptive": "自适应规则在各任务无标注图像上学到的内容：AdaMerging 每个专家、每个张量的 λ（左），"
                    "Concrete 掩码保留的各张量任务向量元素比例（右）。",
    "cap_routing": "WEMoE 路由器在各任务测试图像上的表现：每个专家在各 MoE 层上的平均权重；"
                   "图像所属任务的专家平均得到 {own}，其他每个专家 {other}。",
    "cap_cross": "每个专家在各任务上的 top-1 减去预训练编码器在该任务上的 top-1（百分点）：{parts}。",
    "cap_cross_part": "{s} 微调：在自己的任务上 {own}，在其他任务上平均 {other}",
    "cap_lambda": "各任务平均 top-1 随合并系数 λ 的变化，分别在留出样本（用来选择 λ）和测试集上：{parts}；"
                  "在测试集上选择的 λ 仅作示意。",
    "cap_lambda_part": "{m}：留出样本选 λ = {held}（测试集 {vh} %），测试集会选 {test}（{vt} %）",
    "figure": "图 {n}.",
    "cap_accuracy": "{sets} 上 top-1 (%) 随每类样本数的变化（各种子均值；误差棒：标准差），共 {n} 个方法；"
                    "虚线：零样本（不使用样本）。",
    "cap_on_set": "{s} 上：",
    "cap_grid": "Tip-Adapter 在搜索网格上的 top-1（α 从 {a0} 到 {a1}，β 从 {b0} 到 {b1}），每类 {k}，种子 {seed}："
                "× 为{how}选出的点，○ 为各面板的最优点。在测试集上，选出的点得到 {chosen} %，测试最优点为 {best} %"
                "（不看测试集损失 {d} 个百分点）。",
    "edge_largest": "最大的 {p}", "edge_smallest": "最小的 {p}",
    "cap_grid_edge": "**测试最优点位于搜索范围的边缘**（{where}），{total} 个样本数中有 {n} 个如此（{ks}）："
                     "搜索范围太小，看不到准确率的峰值。",
    "cap_training": "Tip-Adapter-F 每个 epoch 在增强视图上的训练损失和准确率（种子 {seed}），每个样本数一条线。"
                    "最后一个 epoch：{parts}。",
    "cap_training_over": "在 {ks} 时，训练准确率比 val 高出 5 个百分点以上：适配器对样本的拟合好于泛化。",
    "cap_training_ok": "在所有样本数下，训练准确率都没有比 val 高出 5 个百分点以上（视图经过增强，这不是过拟合的迹象）。",
    "cap_training_part": "{k}：样本上 {train} %，val 上 {val} %",
    "cap_path": "{m} 路径上的 top-1 (%)，每类 {k}，在 {sets} 上（各种子均值），从起始模型 (0) 到微调模型 (1)；"
                "点线：每个种子在训练样本上选出的系数（{chosen}），其结果为 {got}。",
    "cap_path_inside": "在测试集上选择，仅作示意：混合系数 {best} 在各测试集上的平均最好（{v} %），比较好的端点高 "
                       "{d} 个百分点，超过种子间的波动（±{s}）。",
    "cap_path_flat": "在测试集上选择，仅作示意：没有任何混合系数比两端都高出种子间的波动（最好的平均为 {best} 处的 "
                     "{v} %；两端为 {lo} % 和 {hi} %；{d} 个百分点，对比 ±{s}）。",
    "cap_path_one": "在测试集上选择，仅作示意，只有一个种子（波动未知）：各测试集平均最好为 {best} 处的 {v} %"
                    "（比较好的端点 {d} 个百分点；两端为 {lo} % 和 {hi} %）。",
    "cap_idood": "每类 {k} 时，val top-1（分布内）对 {sets} 上平均 top-1（分布外）：线为从 0 到 1 的 WiSE-FT 路径，"
                 "点为其他方法，星号为零样本。",
    "cap_idood_both": "相对零样本（{zx} %，{zy} %），{total} 个方法中有 {n} 个在两个轴上都有提升；分布外最好的是 {m}"
                      "（{x} %，{y} %）。",
    "cap_costs": "各微调策略的可训练参数量和每次微调的秒数，以及其 val top-1：{parts}。",
    "cap_costs_part": "{m} 训练 {p} 个参数，用时 {t} 秒，达到 {a} %",
    "cap_examples": "val 图像及零样本与 {m} 的预测（{k}，种子 {seed}；绿色：正确，红色：错误），两者不一致的排在前面。"
                    "在全部 {n} 张 val 图像上，{m} 纠正了 {fixed} 个零样本错误，弄错了 {broken} 个原本正确的答案"
                    "（{net} 个百分点）。",
    "cap_classes": "{m} 相对零样本的逐类 top-1 变化，显示下降和提升最多的各十个类别：{gain} 个类别提升，{lose} 个下降，"
                   "{same} 个不变（中位数变化 {med} 个百分点）。",
    "no_results": "本次运行没有按样本数的结果；见下面各节。",
}

EN.update(_EN_ANALYSIS)  # the qualitative analysis' sentences
ZH.update(_ZH_ANALYSIS)
_LANGS = {"en": EN, "zh": ZH}


def list_languages() -> list[str]:
    """The languages the report can be written in."""
    return list(_LANGS)


def tr(key: str, lang: str = "en", **fields) -> str:
    """The sentence ``key`` in ``lang``, its ``{fields}`` filled in (English where a language
    lacks the key); an unknown language is a :class:`ConfigError` listing the known ones."""
    if lang not in _LANGS:
        raise ConfigError(f"unknown report language {lang!r}; known: {', '.join(_LANGS)}")
    template = _LANGS[lang].get(key, EN[key])
    return template.format(**fields)


def join(items: list[str], lang: str = "en", limit: int = 4) -> str:
    """``a, b and c`` (at most ``limit`` items, then "and N more")."""
    items = list(items)
    if len(items) > limit:
        items = items[:limit] + [tr("more", lang, n=len(items) - limit)]
    if len(items) <= 1:
        return "".join(items)
    return tr("list_sep", lang).join(items[:-1]) + tr("and", lang) + items[-1]
