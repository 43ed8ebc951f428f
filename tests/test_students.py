"""Training on real (tiny) models: masking, loss going down, a loadable checkpoint."""
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
