"""The datasets out of a generate project: TRL rows, JSONL and `datasets` folders, and HH-RLHF read in.

TRL's own data utilities (and, in the slow test, its SFT and DPO trainers on a tiny random model) read the rows,
with a chat-template tokenizer built here from `tokenizers`: nothing is downloaded.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from terakoya.errors import ConfigError, DataError
from terakoya.generation.datasets import (
    PreferencePair,
    SFTExample,
    dataset_card,
    preference_rows,
    read_hh_rlhf,
    sft_rows,
    write_dataset_folder,
    write_jsonl,
)

HH_RLHF = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "hh_rlhf_harmless_test" / "harmless-base-test.jsonl.gz"
)

SYSTEM = {"role": "system", "content": "あなたは丁寧な日本語で答えるアシスタントです。"}
QUESTION = {"role": "user", "content": "富士山の高さは?"}


def _sft() -> list[SFTExample]:
    return [
        SFTExample(1, "q-1", (SYSTEM, QUESTION), "富士山の高さは3,776メートルです。", "teacher_accepted"),
        SFTExample(2, "q-2", (QUESTION,), "3,776 m です。", "expert_corrected"),
    ]


def _pairs() -> list[PreferencePair]:
    return [
        PreferencePair(1, "q-1", (SYSTEM, QUESTION), "3,776メートルです。", "3,000メートルくらいです。", "correction"),
        PreferencePair(2, "q-2", (QUESTION,), "3,776 m です。", "わかりません。", "comparison"),
    ]


def _chat_tokenizer() -> Any:
    """A character-level tokenizer with a chat template, built locally (TRL renders rows through it)."""
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "<eos>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    vocab = {token: i for i, token in enumerate(special)}
    text = "".join(m["content"] for e in _sft() for m in e.messages) + "".join(e.answer for e in _sft())
    text += "".join(p.chosen + p.rejected for p in _pairs())
    for ch in [chr(c) for c in range(32, 127)] + sorted(set(text)):
        vocab.setdefault(ch, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    template = (
        "{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|end|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
    )
    out = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>", chat_template=template
    )
    out.add_special_tokens({"additional_special_tokens": special[3:]})
    return out


# --- rows ---------------------------------------------------------------------------------------------------


def test_sft_rows_are_trl_conversational_rows() -> None:
    rows = sft_rows(_sft())
    assert rows[0] == {
        "messages": [SYSTEM, QUESTION, {"role": "assistant", "content": "富士山の高さは3,776メートルです。"}],
        "item": "q-1",
        "source": "teacher_accepted",
    }
    assert set(rows[1]) == {"messages", "item", "source"}
    assert sft_rows(_sft(), provenance=False)[1] == {
        "messages": [QUESTION, {"role": "assistant", "content": "3,776 m です。"}]
    }


def test_preference_rows_are_trl_conversational_rows() -> None:
    rows = preference_rows(_pairs())
    assert rows[0] == {
        "prompt": [SYSTEM, QUESTION],
        "chosen": [{"role": "assistant", "content": "3,776メートルです。"}],
        "rejected": [{"role": "assistant", "content": "3,000メートルくらいです。"}],
        "item": "q-1",
        "source": "correction",
    }
    assert set(preference_rows(_pairs(), provenance=False)[1]) == {"prompt", "chosen", "rejected"}


def test_rows_refuse_a_prompt_that_does_not_end_on_a_user_turn() -> None:
    answered = (QUESTION, {"role": "assistant", "content": "3,776 m"})
    with pytest.raises(DataError, match="item q-9: the prompt ends on a assistant turn; it must end on the user turn"):
        sft_rows([SFTExample(9, "q-9", answered, "x", "reference")])
    with pytest.raises(DataError, match=r"item q-9: prompt message 0 is \{'role': 'bot', 'content': 'hi'\}; each"):
        preference_rows([PreferencePair(9, "q-9", ({"role": "bot", "content": "hi"},), "a", "b", "comparison")])
    with pytest.raises(DataError, match="item q-9: the prompt has no messages; give at least one user turn"):
        sft_rows([SFTExample(9, "q-9", (), "x", "reference")])


def test_records_refuse_an_unknown_source() -> None:
    with pytest.raises(
        DataError,
        match="SFT source 'teacher' is not one of teacher_accepted, teacher_unreviewed, expert_corrected, expert_pref",
    ):
        SFTExample(1, "q-1", (QUESTION,), "x", "teacher")
    with pytest.raises(DataError, match="preference source 'expert' is not one of correction, comparison; use"):
        PreferencePair(1, "q-1", (QUESTION,), "a", "b", "expert")


def test_trl_data_utilities_accept_both_row_kinds() -> None:
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    tokenizer = _chat_tokenizer()
    sft, pref = sft_rows(_sft())[0], preference_rows(_pairs())[0]
    assert is_conversational(sft) and is_conversational(pref)
    assert maybe_apply_chat_template(sft, tokenizer) == {
        "text": f"<|system|>{SYSTEM['content']}<|end|><|user|>富士山の高さは?<|end|>"
        "<|assistant|>富士山の高さは3,776メートルです。<|end|>"
    }
    rendered = maybe_apply_chat_template(pref, tokenizer)
    assert rendered == {
        "prompt": f"<|system|>{SYSTEM['content']}<|end|><|user|>富士山の高さは?<|end|><|assistant|>",
        "chosen": "3,776メートルです。<|end|>",
        "rejected": "3,000メートルくらいです。<|end|>",
    }
    ids = tokenizer(rendered["prompt"] + rendered["chosen"])["input_ids"]
    assert tokenizer.unk_token_id not in ids  # the tiny vocabulary covers the text: a real tokenization


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers renaming gradient checkpointing, inside trl
def test_trl_trainers_train_a_step_on_the_rows(tmp_path: Path) -> None:
    """SFTTrainer and DPOTrainer each take one step on the rows, provenance columns included (tiny random GPT-2)."""
    pytest.importorskip("torch")
    datasets = pytest.importorskip("datasets")
    from transformers import GPT2Config, GPT2LMHeadModel
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    tokenizer = _chat_tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=128, n_embd=16, n_layer=1, n_head=2, bos_token_id=1, eos_token_id=1
    )
    common: dict[str, Any] = {
        "max_steps": 1,
        "per_device_train_batch_size": 2,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
    }
    sft = SFTTrainer(
        model=GPT2LMHeadModel(config),
        args=SFTConfig(output_dir=str(tmp_path / "sft"), **common),
        train_dataset=datasets.Dataset.from_list(sft_rows(_sft())),
        processing_class=tokenizer,
    )
    assert {"item", "source", "input_ids"} <= set(sft.train_dataset.column_names)
    assert sft.train().global_step == 1
    dpo = DPOTrainer(
        model=GPT2LMHeadModel(config),
        ref_model=GPT2LMHeadModel(config),
        args=DPOConfig(output_dir=str(tmp_path / "dpo"), **common),
        train_dataset=datasets.Dataset.from_list(preference_rows(_pairs())),
        processing_class=tokenizer,
    )
    assert {"item", "source", "prompt_ids", "chosen_ids"} <= set(dpo.train_dataset.column_names)
    assert dpo.train().global_step == 1


# --- files and folders --------------------------------------------------------------------------------------


def test_jsonl_round_trips_utf8(tmp_path: Path) -> None:
    rows = sft_rows(_sft()) + preference_rows(_pairs())
    path = tmp_path / "rows.jsonl"
    assert write_jsonl(rows, path) == 4
    raw = path.read_text(encoding="utf-8")
    assert "富士山" in raw and "\\u" not in raw  # ensure_ascii=False
    assert [json.loads(line) for line in raw.splitlines()] == rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]  # no temporary file left


def test_jsonl_refuses_to_replace_without_force(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("old\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"rows.jsonl exists; pass force=True \(--force\) to replace it"):
        write_jsonl(sft_rows(_sft()), path)
    assert path.read_text(encoding="utf-8") == "old\n"
    write_jsonl(sft_rows(_sft()), path, force=True)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2
    with pytest.raises(ConfigError, match=r"folder .*missing does not exist; create it or choose another output"):
        write_jsonl([], tmp_path / "missing" / "rows.jsonl")


def test_dataset_folder_loads_with_load_from_disk(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = preference_rows(_pairs())
    card = dataset_card(rows, title="Preferences", description="Expert corrections and comparisons.")
    path = write_dataset_folder(rows, tmp_path / "pref", card=card)
    loaded = datasets.load_from_disk(str(path))
    assert loaded.column_names == ["prompt", "chosen", "rejected", "item", "source"]
    assert loaded.to_list() == rows
    readme = (path / "README.md").read_text(encoding="utf-8")
    assert "2 rows, TRL preference format." in readme
    assert "| comparison | 1 |" in readme and "| correction | 1 |" in readme
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pref"]  # no temporary folder left


def test_dataset_folder_refuses_a_non_empty_folder_without_force(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    target = tmp_path / "sft"
    target.mkdir()
    write_dataset_folder(sft_rows(_sft())[:1], target)  # an empty folder is fine
    with pytest.raises(ConfigError, match=r"folder .*sft is not empty; pass force=True \(--force\) to replace it"):
        write_dataset_folder(sft_rows(_sft()), target)
    assert datasets.load_from_disk(str(target)).num_rows == 1  # untouched
    write_dataset_folder(sft_rows(_sft()), target, force=True)
    assert datasets.load_from_disk(str(target)).num_rows == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft"]
    with pytest.raises(DataError, match=r"no rows to save into .*; a dataset folder needs at least one example"):
        write_dataset_folder([], tmp_path / "empty")
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="file is a file; give a folder path to save the dataset into"):
        write_dataset_folder(sft_rows(_sft()), tmp_path / "file")


# --- HH-RLHF ------------------------------------------------------------------------------------------------


def _hh(chosen: str, rejected: str) -> str:
    return json.dumps({"chosen": chosen, "rejected": rejected}, ensure_ascii=False)


def _write_gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def test_read_hh_rlhf_synthetic(tmp_path: Path) -> None:
    talk = "\n\nHuman: 東京の天気は?\n\nAssistant: 晴れです。\n\nHuman: 明日は?"
    path = _write_gz(
        tmp_path / "hh.jsonl.gz",
        [
            _hh(talk + "\n\nAssistant:  雨の予報です。", talk + "\n\nAssistant: 知りません。"),
            "",  # a blank line is skipped, not counted
            _hh("\n\nHuman: hi\n\nAssistant: hello", "\n\nHuman: hi\n\nAssistant: hello "),  # same answer
            _hh(  # the two conversations part before the end
                "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d",
                "\n\nHuman: a\n\nAssistant: B\n\nHuman: c\n\nAssistant: e",
            ),
            _hh("\n\nHuman: x\n\nHuman: y\n\nAssistant: good", "\n\nHuman: x\n\nHuman: y\n\nAssistant: bad"),
            _hh("\n\nHuman: a\n\nAssistant: b\n\nHuman: c", "\n\nHuman: a\n\nAssistant: b"),  # ends on a human turn
        ],
    )
    read = read_hh_rlhf(path)
    assert read.records == 5 and read.n_skipped == 3
    assert read.skipped == {"identical": 1, "diverged_early": 1, "incomplete": 1}
    first, merged = read.pairs
    assert first.messages == (
        {"role": "user", "content": "東京の天気は?"},
        {"role": "assistant", "content": "晴れです。"},
        {"role": "user", "content": "明日は?"},
    )
    assert (first.chosen, first.rejected, first.source) == ("雨の予報です。", "知りません。", "comparison")
    assert (first.item_id, first.external_id) == (1, "hh.jsonl.gz:1")
    assert merged.messages == ({"role": "user", "content": "x\n\ny"},)  # one speaker twice: one turn
    assert merged.external_id == "hh.jsonl.gz:5"
    assert [p.external_id for p in read_hh_rlhf(path, limit=1).pairs] == ["hh.jsonl.gz:1"]
    plain = tmp_path / "hh.jsonl"
    plain.write_text(_hh(talk + "\n\nAssistant: A", talk + "\n\nAssistant: B") + "\n", encoding="utf-8")
    assert len(read_hh_rlhf(plain).pairs) == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"hh.jsonl.gz:2: not valid JSON \(.*\); fix or delete the line"),
        ('["a", "b"]', "hh.jsonl.gz:2: expected a JSON object with 'chosen' and 'rejected'; fix or delete the line"),
        ('{"chosen": "x"}', r"hh.jsonl.gz:2: 'rejected' missing or not text \(keys: chosen\); each line needs"),
        (_hh("just text", "\n\nHuman: a\n\nAssistant: b"), "hh.jsonl.gz:2: 'chosen' is not an HH-RLHF conversation"),
    ],
)
def test_read_hh_rlhf_malformed_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    good = _hh("\n\nHuman: a\n\nAssistant: b", "\n\nHuman: a\n\nAssistant: c")
    path = _write_gz(tmp_path / "hh.jsonl.gz", [good, line])
    with pytest.raises(DataError, match=message):
        read_hh_rlhf(path)


def test_read_hh_rlhf_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.jsonl\.gz does not exist; check the path to the HH-RLHF"):
        read_hh_rlhf(tmp_path / "nope.jsonl.gz")
    fake = tmp_path / "fake.jsonl.gz"
    fake.write_text("not gzip", encoding="utf-8")
    with pytest.raises(DataError, match=r"fake.jsonl.gz cannot be read \(.*\); give an HH-RLHF .jsonl file"):
        read_hh_rlhf(fake)


def test_read_hh_rlhf_real_harmless_test_split(capsys: pytest.CaptureFixture[str]) -> None:
    """The real HH-RLHF harmless-base test split, read where it lies (never copied into the project)."""
    if not HH_RLHF.is_file():
        pytest.skip(f"HH-RLHF harmless-base test split not found at {HH_RLHF}")
    read = read_hh_rlhf(HH_RLHF)
    assert read.records == 2312
    assert len(read.pairs) + read.n_skipped == read.records
    for pair in read.pairs:
        assert pair.messages and pair.messages[-1]["role"] == "user", pair.external_id
        assert pair.chosen != pair.rejected, pair.external_id
    rows = preference_rows(read.pairs)  # every prompt passes the row checks
    assert len(rows) == len(read.pairs)
    with capsys.disabled():
        print(f"\nHH-RLHF harmless-base test: {read.records} records, {len(read.pairs)} pairs, skipped {read.skipped}")
