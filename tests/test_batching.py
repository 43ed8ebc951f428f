"""Micro-batching on real tokenized rows: packing keeps labels and attention inside each example."""
import json

import pytest
import torch
from conftest import SHARED
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
)

from herd.batching import IGNORE, collate, collate_packed, epoch_batches, packing_error
from herd.students import encode_causal

ALPACA = SHARED / "seed/alpaca_5000.json"


def alpaca_rows(n: int) -> list[dict]:
    if not ALPACA.exists():
        pytest.skip(f"{ALPACA} is not here")
    rows = json.loads(ALPACA.read_text())[:n]
    return [{"instruction": "\n".join(filter(None, [r["instruction"], r["input"]])), "response": r["output"]}
            for r in rows]


@pytest.fixture(scope="module")
def examples(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    return [encode_causal(tok, r["instruction"], r["response"], 96) for r in alpaca_rows(5)]


def tiny_llama(tokenizer_dir, attn: str):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      attn_implementation=attn)
    return LlamaForCausalLM(cfg).eval()


def test_packed_row_keeps_each_examples_labels_and_positions(examples):
    packed = collate_packed(examples)
    assert set(packed) == {"input_ids", "position_ids", "labels"}  # no mask: built from positions
    start = 0
    for ex in examples:
        n = len(ex["input_ids"])
        assert packed["input_ids"][0, start : start + n].tolist() == ex["input_ids"]
        assert packed["position_ids"][0, start : start + n].tolist() == list(range(n))
        # the first label is never predicted unpacked; packed it must not be predicted across
        assert packed["labels"][0, start : start + n].tolist() == [IGNORE] + ex["labels"][1:]
        start += n
    assert start == packed["input_ids"].shape[1]
    # the loss is on the same (response) tokens as padded
    assert int((packed["labels"] != IGNORE).sum()) == int((collate(examples, 0)["labels"] != IGNORE).sum())


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packing_keeps_attention_inside_each_example_llama(tokenizer_dir, examples, attn):
    model = tiny_llama(tokenizer_dir, attn)
    assert packing_error(model, examples) < 1e-5
    # the same logits, so the same loss: packed against padded, token-weighted over the batch
    with torch.no_grad():
        padded = collate(examples, 0)
        packed = collate_packed(examples)
        assert float(model(**packed, use_cache=False).loss) == pytest.approx(float(model(**padded).loss), rel=1e-5)
    # control: without restarting the positions the examples see each other
    plain = collate_packed(examples)
    with torch.no_grad():
        leaked = model(input_ids=plain["input_ids"], use_cache=False).logits[0]
        second = len(examples[0]["input_ids"])
        alone = model(input_ids=torch.tensor([examples[1]["input_ids"]])).logits[0]
    assert float((leaked[second : second + len(examples[1]["input_ids"])] - alone).abs().max()) > 1e-3


def test_packing_keeps_attention_inside_each_example_gpt2(tiny_gpt2, examples):
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    assert packing_error(model, examples) < 1e-5


def test_grouped_batches_cover_the_epoch_with_less_padding(examples, tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    rows = alpaca_rows(200)
    lengths = [len(encode_causal(tok, r["instruction"], r["response"], 192)["input_ids"]) for r in rows]
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0)).tolist()

    def padding(batches):
        return sum(max(lengths[k] for k in b) * len(b) - sum(lengths[k] for k in b) for b in batches)

    padded = epoch_batches(order, lengths, 4, "padded", torch.Generator().manual_seed(1))
    grouped = epoch_batches(order, lengths, 4, "grouped", torch.Generator().manual_seed(1))
    again = epoch_batches(order, lengths, 4, "grouped", torch.Generator().manual_seed(1))
    assert grouped == again  # a function of the generator's state: resumable
    assert sorted(k for b in grouped for k in b) == list(range(len(rows)))
    assert len(grouped) == len(padded) == 50
    assert padding(grouped) < padding(padded) / 3
    with pytest.raises(ValueError, match="batching is 'stacked'"):
        epoch_batches(order, lengths, 4, "stacked", torch.Generator())
