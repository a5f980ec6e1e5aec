"""The generative student: a tiny GPT-2-style model with its own tokenizer, trained with TRL in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl")

from terakoya.errors import ConfigError, DataError, StudentError
from terakoya.students import LinearStudent
from terakoya.students.generative import Generation, GenerativeStudent, is_generative_folder

FACTS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Kenya", "Nairobi"), ("Peru", "Lima")]
QUESTIONS = ["What is the capital of {}?", "Capital of {}?", "Tell me the capital of {}.", "{}: capital?", "{}?"]
JA_FACTS = [("日本", "東京"), ("フランス", "パリ"), ("イタリア", "ローマ")]
JA_QUESTIONS = ["{}の首都は？", "{}の首都はどこですか？", "{}の首都を教えて。", "{}？"]
JA_SYSTEM = {"role": "system", "content": "日本語で答えてください。"}


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


SFT = [
    {"messages": [_user(q.format(c)), _assistant(f"The capital of {c} is {a}.")]} for c, a in FACTS for q in QUESTIONS
] + [
    {"messages": [JA_SYSTEM, _user(q.format(c)), _assistant(f"{c}の首都は{a}です。")]}
    for c, a in JA_FACTS
    for q in JA_QUESTIONS
]
PREFERENCES = [
    {"prompt": [_user(f"Capital of {c}?")], "chosen": [_assistant(f"The capital of {c} is {a}.")],
     "rejected": [_assistant("I do not know.")]}
    for c, a in FACTS
] + [
    {"prompt": [JA_SYSTEM, _user(f"{c}の首都は？")], "chosen": [_assistant(f"{c}の首都は{a}です。")],
     "rejected": [_assistant("わかりません。")]}
    for c, a in JA_FACTS
]  # fmt: skip
PROMPTS = [row["messages"][:-1] for row in SFT]
ANSWERS = [row["messages"][-1]["content"] for row in SFT]
TINY = {"vocab_size": 500, "n_layer": 2, "n_embd": 64, "n_head": 4, "max_length": 64, "batch_size": 8,
        "learning_rate": 3e-3, "max_new_tokens": 24}  # fmt: skip


@pytest.fixture(scope="module")
def progress() -> list[tuple[int, int]]:
    return []


@pytest.fixture(scope="module")
def fitted(progress: list[tuple[int, int]]) -> GenerativeStudent:
    student = GenerativeStudent(**TINY, sft_epochs=60, dpo_epochs=3)
    return student.fit(SFT, PREFERENCES, progress=lambda done, total: progress.append((done, total)))


def test_sft_learns_the_answers_in_english_and_japanese(fitted: GenerativeStudent) -> None:
    sft = fitted.metadata_["losses"]["sft"]
    assert sft["final"] < 0.2 * sft["first"]
    answers = fitted.generate(PROMPTS)
    assert all(isinstance(a, Generation) and a.tokens > 0 and a.seconds > 0 for a in answers)
    right = [a.text == want for a, want in zip(answers, ANSWERS, strict=True)]
    assert sum(right) >= 0.9 * len(SFT), [a.text for a in answers]
    assert fitted.generate([PROMPTS[-1]])[0].text == "イタリアの首都はローマです。"
    assert fitted.metadata_["rows"] == {"sft": len(SFT), "preferences": len(PREFERENCES)}
    assert 10_000 < fitted.metadata_["parameters"] < 200_000
    assert {"torch", "transformers", "trl", "tokenizers"} <= set(fitted.metadata_["library_versions"])


def test_dpo_runs_on_the_preference_pairs_and_progress_counts_both_stages(
    fitted: GenerativeStudent, progress: list[tuple[int, int]]
) -> None:
    steps = fitted.metadata_["steps"]
    assert steps["dpo"] == 3  # 8 pairs in one batch, three passes
    dpo = fitted.metadata_["losses"]["dpo"]
    assert dpo["first"] == pytest.approx(0.6931, abs=1e-3)  # log 2: the student starts equal to its reference
    assert dpo["final"] < dpo["first"]
    total = steps["sft"] + steps["dpo"]
    assert progress == [(i, total) for i in range(1, total + 1)]


def test_dpo_moves_the_chosen_answers_up_against_the_rejected_ones(fitted: GenerativeStudent) -> None:
    # the same tokenizer and the same SFT (same data, same seed), without the DPO stage
    sft_only = GenerativeStudent(**TINY, sft_epochs=60, dpo_epochs=0).fit(SFT, PREFERENCES)
    prompts = [row["prompt"] for row in PREFERENCES]
    chosen = [row["chosen"][0]["content"] for row in PREFERENCES]
    rejected = [row["rejected"][0]["content"] for row in PREFERENCES]

    def margin(student: GenerativeStudent) -> float:
        up, down = student.log_likelihood(prompts, chosen), student.log_likelihood(prompts, rejected)
        return sum(c - r for c, r in zip(up, down, strict=True)) / len(prompts)

    assert all(v < 0 for v in fitted.log_likelihood(prompts, chosen))
    assert margin(fitted) > margin(sft_only)  # the same SFT (same seed), then DPO: the pairs pull apart
    with pytest.raises(DataError, match="give one answer each"):
        fitted.log_likelihood(prompts, chosen[:1])


def test_a_saved_student_is_a_plain_hugging_face_folder_and_generates_the_same(
    fitted: GenerativeStudent, tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = fitted.save(tmp_path / "student")
    assert is_generative_folder(folder) and (folder / "model.safetensors").is_file()
    meta = json.loads((folder / "terakoya.json").read_text(encoding="utf-8"))
    assert meta["kind"] == "generative.v1" and meta["task_kind"] == "generate.v1" and meta["format"] == 1
    assert meta["params"] == fitted.get_params() and meta["metadata"]["steps"] == fitted.metadata_["steps"]

    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer.apply_chat_template(PROMPTS[0], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=24, do_sample=False)
    plain = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert plain == fitted.generate([PROMPTS[0]])[0].text

    loaded = GenerativeStudent.load(folder)
    assert loaded.get_params() == fitted.get_params() and loaded.metadata_ == fitted.metadata_
    conversations = [*PROMPTS[::4], [_user("未知の質問")]]
    before, after = fitted.generate(conversations), loaded.generate(conversations)
    assert [(a.text, a.tokens) for a in after] == [(b.text, b.tokens) for b in before]


def test_generation_honours_max_new_tokens(fitted: GenerativeStudent) -> None:
    (short,) = fitted.generate([PROMPTS[0]], max_new_tokens=2)
    assert short.tokens == 2 and short.finish_reason == "length"
    (full,) = fitted.generate([PROMPTS[0]])
    assert full.finish_reason == "stop" and full.prompt_tokens > 0
    (sampled,) = fitted.generate([PROMPTS[0]], temperature=1.0, max_new_tokens=5)
    assert 1 <= sampled.tokens <= 5


def test_lora_trains_adapters_on_a_local_base_model_and_merges_them(fitted: GenerativeStudent, tmp_path: Path) -> None:
    base = fitted.save(tmp_path / "base")
    student = GenerativeStudent(base_model=str(base), lora=True, lora_r=4, sft_epochs=1, dpo_epochs=1, max_length=64)
    student.fit(SFT[:8], PREFERENCES[:2])
    assert student.metadata_["model"] == {"base_model": str(base), "lora": True}
    assert not [name for name, _ in student.model_.named_modules() if "lora" in name.lower()]
    assert student.metadata_["losses"]["dpo"]
    assert GenerativeStudent.load(student.save(tmp_path / "merged")).generate([PROMPTS[0]])[0].tokens > 0


def test_bad_inputs_are_explained() -> None:
    with pytest.raises(DataError, match=r"no SFT rows to train .* pass at least one conversation that ends with"):
        GenerativeStudent().fit([])
    with pytest.raises(DataError, match=r"SFT row 1 does not end with an assistant message"):
        GenerativeStudent().fit([SFT[0], {"messages": [_user("hi")]}])
    with pytest.raises(DataError, match=r"SFT row 0 has no 'messages'"):
        GenerativeStudent().fit([{"prompt": "hi", "completion": "hello"}])
    with pytest.raises(DataError, match=r"preference row 0: rejected must be one assistant message"):
        GenerativeStudent().fit(SFT, [{**PREFERENCES[0], "rejected": [_user("x"), _assistant("y")]}])
    with pytest.raises(DataError, match=r"preference row 0: rejected must be a non-empty list of messages"):
        GenerativeStudent().fit(SFT, [{**PREFERENCES[0], "rejected": "no"}])
    with pytest.raises(ConfigError, match=r"base_model '/no/such/model' does not exist; pass the path of a local"):
        GenerativeStudent(base_model="/no/such/model").fit(SFT)
    with pytest.raises(ConfigError, match=r"vocab_size=100 is below the 261 tokens"):
        GenerativeStudent(vocab_size=100).fit(SFT)
    with pytest.raises(ConfigError, match=r"lora=True needs a base_model"):
        GenerativeStudent(lora=True).fit(SFT)
    long = [{"messages": [_user("a question that goes on and on " * 4), _assistant("ok")]}]
    with pytest.raises(DataError, match=r"every row is too long: after cutting to max_length=8 tokens no answer"):
        GenerativeStudent(vocab_size=300, n_layer=1, n_embd=16, n_head=2, max_length=8).fit(long)
    with pytest.raises(StudentError, match=r"not fitted yet; call fit\(sft_rows\) first"):
        GenerativeStudent().generate(PROMPTS[:1])


def test_folders_that_are_not_generative_students_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StudentError, match=r"has no terakoya.json; pass the folder GenerativeStudent.save wrote"):
        GenerativeStudent.load(tmp_path)
    with pytest.raises(StudentError, match=r"the folder does not exist"):
        GenerativeStudent.load(tmp_path / "missing")
    classifier = LinearStudent().fit(["good", "bad", "fine", "awful"], ["p", "n", "p", "n"]).save(tmp_path / "linear")
    assert not is_generative_folder(classifier) and not is_generative_folder(tmp_path)
    (tmp_path / "terakoya.json").write_text('{"kind": "something.v9"}', encoding="utf-8")
    assert not is_generative_folder(tmp_path)
    with pytest.raises(StudentError, match=r"names kind 'something.v9', not generative.v1"):
        GenerativeStudent.load(tmp_path)


def test_hyper_parameters_follow_scikit_learns_conventions() -> None:
    student = GenerativeStudent(n_layer=1, seed=3)
    assert student.get_params()["n_layer"] == 1 and student.get_params()["base_model"] is None
    assert student.set_params(n_embd=32) is student and student.n_embd == 32
    assert repr(student) == "GenerativeStudent(n_layer=1, n_embd=32, seed=3)"
    with pytest.raises(ConfigError, match=r"no hyper-parameter 'layers'; valid ones are: base_model, vocab_size"):
        student.set_params(layers=2)
