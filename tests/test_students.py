"""Training on real (tiny) models: masking, loss going down, a loadable checkpoint."""
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from herd.students import IGNORE, TrainConfig, encode_causal, encode_seq2seq, train

ROWS = [
    {"instruction": "What is the capital of France?", "response": "Paris."},
    {"instruction": "Name a primary colour.", "response": "Red."},
    {"instruction": "What is two plus two?", "response": "Four."},
    {"instruction": "Which animal barks?", "response": "A dog."},
]


def cfg(**kw):
    base = dict(learning_rate=3e-3, epochs=1, batch_size=2, grad_accum=1, max_length=64,
                warmup_ratio=0.0, weight_decay=0.0, max_steps=None, seed=0)
    return TrainConfig(**{**base, **kw})


def test_causal_labels_mask_the_prompt(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    ex = encode_causal(tok, "Say hi.", "Hi!", 128)
    n_answer = len(tok("Hi!", add_special_tokens=False)["input_ids"]) + 1
    assert len(ex["input_ids"]) == len(ex["labels"])
    assert ex["labels"][-n_answer:] == ex["input_ids"][-n_answer:]
    assert all(t == IGNORE for t in ex["labels"][:-n_answer])
    assert ex["labels"][-1] == tok.eos_token_id


def test_seq2seq_labels_are_the_response(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    ex = encode_seq2seq(tok, "Say hi.", "Hi!", 128)
    assert ex["labels"] == tok("Hi!", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert IGNORE not in ex["labels"]


def test_training_lowers_loss_and_saves(tmp_path, tiny_gpt2):
    out = tmp_path / "student"
    metrics = train(tiny_gpt2, ROWS * 4, ROWS, cfg(max_steps=12), out)
    assert metrics["steps"] == 12 and metrics["architecture"] == "decoder"
    assert metrics["val_loss_after"] < metrics["val_loss_before"]
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.num_parameters() == metrics["parameters"]
    assert not list(tmp_path.glob(".student.*"))  # no temporary directory left behind


def test_encoder_decoder_trains(tmp_path, tiny_t5):
    metrics = train(tiny_t5, ROWS * 4, ROWS, cfg(epochs=2), tmp_path / "t5")
    assert metrics["architecture"] == "encoder-decoder"
    assert metrics["steps"] == 16  # 16 rows / batch 2 = 8 steps an epoch, 2 epochs
    assert metrics["val_loss_after"] < metrics["val_loss_before"]


def test_gguf_conversion_keeps_the_real_end_token(tmp_path, smollm2_gguf):
    from transformers import AutoConfig

    from herd.assets import convert_gguf

    out = tmp_path / "smollm2"
    convert_gguf(smollm2_gguf, out)
    tok = AutoTokenizer.from_pretrained(out)
    cfg = AutoConfig.from_pretrained(out)
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == cfg.eos_token_id
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.bos_token_id
    assert "quantization_config" not in cfg.to_dict()


def test_placement_follows_the_config_and_the_hardware():
    from herd.placement import Placement, placement

    assert placement("s", None, None, "auto", 0, False) == Placement("cpu", 1, "fp32")
    assert placement("s", None, None, "auto", 2, True) == Placement("cuda", 1, "bf16")
    assert placement("s", 0, None, "auto", 2, True) == Placement("cpu", 1, "fp32")
    assert placement("s", 2, None, "auto", 4, True) == Placement("cuda", 2, "bf16")
    assert placement("s", 1, None, "fp32", 1, True) == Placement("cuda", 1, "fp32")
    assert placement("s", 0, 3, "auto", 0, False) == Placement("cpu", 3, "fp32")
    with pytest.raises(RuntimeError, match=r"students\.big\.gpus is 8 but this job sees 0 CUDA device"):
        placement("big", 8, None, "auto", 0, False)
    with pytest.raises(RuntimeError, match=r"students\.s\.processes is 3; on GPUs it is one per GPU \(2\)"):
        placement("s", 2, 3, "auto", 2, True)
    with pytest.raises(RuntimeError, match="no bf16"):
        placement("s", 1, None, "bf16", 1, False)


def test_data_parallel_processes_take_the_same_steps_as_one(tmp_path, tokenizer_dir):
    """Two gloo processes with one micro-batch each per step make the same updates as one
    process accumulating two, including an epoch's short last step (5 micro-batches)."""
    import torch

    from herd.assets import build_scratch
    from herd.placement import Placement

    base = tmp_path / "gpt2"
    build_scratch("gpt2", {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 256, "resid_pdrop": 0.0,
                           "embd_pdrop": 0.0, "attn_pdrop": 0.0}, str(tokenizer_dir), base, seed=0)
    rows = (ROWS * 3)[:10]
    one = train(base, rows, ROWS, cfg(grad_accum=2, epochs=2), tmp_path / "one", threads=1)
    # with a checkpoint after every step: rank 0 writes it with both processes' RNG states
    two = train(base, rows, ROWS, cfg(grad_accum=1, epochs=2, checkpoint_every=1), tmp_path / "two",
                place=Placement("cpu", 2, "fp32"), threads=2, checkpoint=tmp_path / "ckpt")
    assert one["steps"] == two["steps"] == 6  # 10 rows = 5 micro-batches = 3 steps an epoch
    assert two["processes"] == 2 and two["tokens"] == one["tokens"]
    assert not (tmp_path / "ckpt").exists()  # removed once the model is saved
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)
    for key in ("val_loss_before", "val_loss_after"):  # each process scores half the validation rows
        assert two[key] == pytest.approx(one[key], rel=1e-5)
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "one").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "two").state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    assert not torch.equal(a["transformer.h.0.mlp.c_fc.weight"],
                           AutoModelForCausalLM.from_pretrained(base).state_dict()["transformer.h.0.mlp.c_fc.weight"])


def test_packed_training_learns_what_padded_does(tmp_path, tokenizer_dir):
    """Packed batches hold the same examples as padded ones, so the steps are the same up to
    float rounding; length-grouped batches train on the same rows with less padding."""
    from herd.assets import build_scratch

    base = tmp_path / "gpt2"
    build_scratch("gpt2", {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 256, "resid_pdrop": 0.0,
                           "embd_pdrop": 0.0, "attn_pdrop": 0.0}, str(tokenizer_dir), base, seed=0)
    rows = ROWS * 3
    runs = {mode: train(base, rows, ROWS, cfg(batch_size=3, epochs=2, batching=mode), tmp_path / mode, threads=1)
            for mode in ("padded", "packed", "grouped")}
    padded, packed, grouped = runs["padded"], runs["packed"], runs["grouped"]
    assert packed["batching"] == "packed" and grouped["batching"] == "grouped"
    assert packed["useful_tokens"] == padded["useful_tokens"] == grouped["useful_tokens"] > 0
    assert packed["useful_tokens_per_second"] > 0
    assert packed["train_loss"] == pytest.approx(padded["train_loss"], rel=1e-4)
    assert packed["val_loss_after"] == pytest.approx(padded["val_loss_after"], rel=1e-4)
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "padded").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "packed").state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    assert grouped["val_loss_after"] < grouped["val_loss_before"]


def test_encoder_decoder_asked_to_pack_groups(tmp_path, tiny_t5):
    metrics = train(tiny_t5, ROWS * 2, ROWS, cfg(max_steps=2, batching="packed"), tmp_path / "t5")
    assert metrics["batching"] == "grouped"


def test_student_base_from_scratch_takes_the_rules_tokenizer_and_the_seed(tmp_path, tokenizer_dir):
    """build_student_base's scratch path: the tokenizer a rule hands it replaces scratch.tokenizer
    (here a path that does not exist), and the seed makes the weights."""
    import torch

    from herd.assets import build_student_base

    arch = {"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 64}
    source = {"scratch": {"family": "gpt2", "tokenizer": str(tmp_path / "absent"), "arch": arch}}
    build_student_base(source, tmp_path / "a", str(tokenizer_dir), seed=1)
    build_student_base(source, tmp_path / "b", str(tokenizer_dir), seed=1)
    own = {"scratch": {**source["scratch"], "tokenizer": str(tokenizer_dir)}}
    build_student_base(own, tmp_path / "c", None, seed=2)  # no rule tokenizer: scratch.tokenizer
    a, b, c = (AutoModelForCausalLM.from_pretrained(tmp_path / n) for n in "abc")
    assert a.config.n_embd == 16 and a.config.vocab_size == len(AutoTokenizer.from_pretrained(tokenizer_dir))
    key = "transformer.h.0.mlp.c_fc.weight"
    assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    assert not torch.equal(a.state_dict()[key], c.state_dict()[key])
    assert AutoTokenizer.from_pretrained(tmp_path / "c").vocab_size == AutoTokenizer.from_pretrained(tmp_path / "a").vocab_size
