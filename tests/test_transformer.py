"""The transformer of notebook 09: TinyTransformer, the sorting task, sequence labels in training,
warm-up, lesions and reordering of sublayers, and what the landscape engine does with it."""

import math

import pytest
import torch

from skipviz import data, exercises, landscape, models, paths, training
from skipviz.data import IGNORE
from skipviz.errors import SkipvizValueError
from skipviz.landscape.fast import graph


def tiny(norm="pre", depth=2, branch_scale=1.0, seed=0, d_model=16):
    return models.TinyTransformer(10, 9, d_model=d_model, depth=depth, heads=4, norm=norm,
                                  branch_scale=branch_scale, seed=seed)


@pytest.fixture(scope="module")
def task():
    return data.sorting(n_train=64, n_test=32)


# ---------------------------------------------------------------------------- the data


def test_sorting_examples_are_digits_then_the_same_digits_sorted(task):
    x, y = task.split("train")
    assert x.shape == (64, 9) and y.shape == (64, 9) and task.num_classes == 10
    digits = x[:, :5].long()
    ordered = digits.sort(dim=1).values
    assert torch.equal(x[:, 5:].long(), ordered[:, :-1])      # the input holds all but the last sorted digit
    assert torch.equal(y[:, 4:], ordered)                     # position t is labelled with token t + 1
    assert (y[:, :4] == IGNORE).all()                         # the unsorted digits are not scored


def test_sorting_train_and_test_share_no_sequence():
    task = data.sorting(length=3, digits=4, n_train=40, n_test=20)  # 64 possible: most of them drawn
    rows = {tuple(r.tolist()) for r in torch.cat([task.x_train, task.x_test])[:, :3].long()}
    assert len(rows) == 60


def test_sorting_is_fixed_by_its_seed_and_refuses_more_sequences_than_exist():
    a, b = data.sorting(n_train=16, n_test=8, seed=3), data.sorting(n_train=16, n_test=8, seed=3)
    assert a.fingerprint() == b.fingerprint() != data.sorting(n_train=16, n_test=8, seed=4).fingerprint()
    with pytest.raises(SkipvizValueError, match="only 8 sequences"):
        data.sorting(length=3, digits=2, n_train=6, n_test=3)


def test_dataset_refuses_ignore_in_one_label_per_example_and_rows_without_a_scored_label():
    x = torch.zeros(2, 3)
    with pytest.raises(SkipvizValueError, match="0..num_classes-1 = 0..2; got"):
        data.Dataset("d", x, torch.tensor([0, -1]), x, torch.tensor([0, 1]), "classification", 3)
    labels = torch.tensor([[IGNORE, 1, 2], [IGNORE, IGNORE, IGNORE]])
    with pytest.raises(SkipvizValueError, match="row 1 is all IGNORE"):
        data.Dataset("d", x, labels, x, labels, "classification", 3)


# ---------------------------------------------------------------------------- the model


def test_shapes_skips_and_config_twin(task):
    model = tiny(depth=3)
    out = model(task.x_train[:5])
    assert out.shape == (5, 9, 10)
    assert model.num_skips == 6 and len(model.blocks) == 3
    twin = models.TinyTransformer.from_config(model.config)
    assert torch.equal(twin(task.x_train[:5]), out)
    assert torch.equal(model(task.x_train[:5].long()), out)   # integer token ids work too


@pytest.mark.parametrize("norm", models.PLACEMENTS)
def test_the_model_is_causal(norm, task):
    model = tiny(norm)
    x = task.x_train[:4].clone()
    changed = x.clone()
    changed[:, 6:] = (changed[:, 6:] + 3) % 10
    with torch.no_grad():
        assert torch.allclose(model(x)[:, :6], model(changed)[:, :6], atol=1e-6)
        assert not torch.allclose(model(x)[:, 6:], model(changed)[:, 6:], atol=1e-3)


@pytest.mark.parametrize("norm", models.PLACEMENTS)
def test_a_skip_switched_off_means_the_branch_replaces_the_stream(norm):
    block = models.TransformerBlock(16, 4, norm=norm)
    x = torch.randn(2, 5, 16)
    attention = block.attention(block.norm_attention(x) if norm == "pre" else x)
    h = block.norm_attention(attention) if norm == "post" else attention
    with torch.no_grad():
        assert torch.allclose(block.sublayer(x, "attention", skip=False), h, atol=1e-6)
        on = block.sublayer(x, "attention", skip=True)
        assert torch.allclose(on, block.norm_attention(x + attention) if norm == "post" else x + attention, atol=1e-6)


def test_the_forward_pass_is_the_residual_stream_read_out(task):
    model = tiny(depth=3)
    model.skips[2] = False
    with torch.no_grad():
        states = model.residual_stream(task.x_test)
        assert len(states) == 7
        assert torch.equal(model.readout(states[-1]), model(task.x_test))


def test_rezero_starts_every_layer_as_the_identity(task):
    model = tiny("none", depth=3, branch_scale="rezero")
    with torch.no_grad():
        states = model.residual_stream(task.x_test)
    assert all(torch.equal(s, states[0]) for s in states)
    assert {n for n, _ in model.named_parameters() if "alpha" in n} == {
        f"blocks.{i}.alpha_{w}" for i in range(3) for w in ("attention", "mlp")}


def test_a_number_scales_every_branch():
    x = torch.randn(2, 4, 16)
    one, half = models.TransformerBlock(16, 4, "pre", 1.0), models.TransformerBlock(16, 4, "pre", 0.5)
    half.load_state_dict(one.state_dict())
    with torch.no_grad():
        assert torch.allclose(half.sublayer(x, "mlp") - x, 0.5 * (one.sublayer(x, "mlp") - x), atol=1e-6)


def test_pre_ln_has_a_final_layer_norm_and_the_others_do_not():
    assert isinstance(tiny("pre").norm_out, torch.nn.LayerNorm)
    assert isinstance(tiny("post").norm_out, torch.nn.Identity)
    assert isinstance(tiny("none").norm_out, torch.nn.Identity)


@pytest.mark.parametrize("kwargs, match", [
    (dict(d_model=10, heads=4), "multiple of heads"),
    (dict(norm="middle"), "norm"),
    (dict(branch_scale="zero"), "branch_scale"),
    (dict(branch_scale=0.0), "branch_scale"),
    (dict(vocab_size=1), "vocab_size"),
    (dict(depth=0), "depth"),
    (dict(d_model=10 ** 6, depth=1000), "weights"),
])
def test_bad_configurations_are_refused_naming_the_argument(kwargs, match):
    args = dict(vocab_size=10, seq_len=9) | kwargs
    with pytest.raises(SkipvizValueError, match=match):
        models.TinyTransformer(**args)


@pytest.mark.parametrize("x, match", [
    (torch.zeros(2, 8), r"shape \(batch, 9\)"),
    (torch.full((2, 9), 10.0), "token ids"),
    (torch.full((2, 9), 0.5), "token ids"),
    (torch.full((2, 9), -1.0), "token ids"),
])
def test_bad_tokens_are_refused(x, match):
    with pytest.raises(SkipvizValueError, match=match):
        tiny()(x)


# ---------------------------------------------------------------------------- training


def test_loss_and_accuracy_count_the_scored_positions_only(task):
    model = tiny()
    with torch.no_grad():
        out = model(task.x_test)
    y = task.y_test
    scored = y != IGNORE
    expected = torch.nn.functional.cross_entropy(out[scored], y[scored])
    assert torch.allclose(training.loss_for_targets(out, y), expected)
    points = torch.stack([out, 2 * out])
    each = training.loss_for_targets(points, y, points=True)
    assert torch.allclose(each[0], expected, atol=1e-6)
    assert torch.allclose(each[1], torch.nn.functional.cross_entropy(2 * out[scored], y[scored]), atol=1e-6)
    evaluation = training.evaluate(model, task)
    assert evaluation.accuracy == pytest.approx((out.argmax(-1) == y)[scored].float().mean().item())
    assert evaluation.loss == pytest.approx(expected.item(), rel=1e-6)


def test_labels_must_fit_the_sequence_model(task):
    model = tiny()
    with pytest.raises(SkipvizValueError, match=r"one label per position"):
        training.check_input_fits(model, task.x_train[:4], task.y_train[:4, 4])
    with pytest.raises(SkipvizValueError, match="IGNORE"):
        training.loss_for_targets(model(task.x_train[:2]), torch.full((2, 9), IGNORE))


def test_warmup_starts_at_lr_over_warmup(task):
    """One step with warm-up w is one step at lr / w: Adam's first step has size lr per weight."""
    a, b = tiny(), tiny()
    training.fit(a, task, steps=1, lr=1e-2, warmup=4, cache=False, progress=False)
    training.fit(b, task, steps=1, lr=1e-2 / 4, cache=False, progress=False)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-7)


def test_warmup_reaches_the_full_rate_and_zero_warmup_changes_nothing(task):
    a, b, c = tiny(), tiny(), tiny()
    training.fit(a, task, steps=3, lr=1e-2, warmup=1, cache=False, progress=False)
    training.fit(b, task, steps=3, lr=1e-2, cache=False, progress=False)
    training.fit(c, task, steps=3, lr=1e-2, warmup=2, cache=False, progress=False)
    assert all(torch.equal(pa, pb) for pa, pb in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(pb, pc) for pb, pc in zip(b.parameters(), c.parameters()))


def test_warmup_is_part_of_the_cache_key_only_when_used(task):
    model = tiny()
    base = dict(steps=2, lr=1e-3, batch_size=8, seed=0, optimizer="adam", weight_decay=0.0, eval_every=1)
    from skipviz.fingerprints import cache_key
    assert cache_key(model, task, base) != cache_key(model, task, base | {"warmup": 5})
    with pytest.raises(SkipvizValueError, match="warmup"):
        training.fit(model, task, steps=2, warmup=-1)


# ---------------------------------------------------------------------------- the unraveled view


def test_deleting_a_sublayer_zeroes_its_branch_and_restores_it(task):
    model = tiny(depth=2)
    x = task.x_test
    with torch.no_grad():
        before = model(x)
        h = model.embed(x)
        h = model.blocks[0].sublayer(h, "attention")
        h = model.blocks[1].sublayer(model.blocks[0].sublayer(h, "mlp"), "attention")
        expected = model.readout(h)   # layer 2's MLP (sublayer 3) deleted: x + 0
        with paths.deleted(model, [3]):
            assert torch.allclose(model(x), expected, atol=1e-6)
        assert torch.equal(model(x), before)
    assert paths.lesion(model, task, [3]) == pytest.approx(
        (expected.argmax(-1) == task.y_test)[task.y_test != IGNORE].float().mean().item())
    with pytest.raises(SkipvizValueError, match="0..3"):
        paths.lesion(model, task, [4])


def test_reordering_layers_keeps_the_skips_in_place(task):
    model = tiny(depth=3)
    x = task.x_test
    with torch.no_grad():
        before = model(x)
        twin = models.TinyTransformer.from_config(model.config)
        twin.blocks = torch.nn.ModuleList([twin.blocks[1], twin.blocks[0], twin.blocks[2]])
        with paths.reordered(model, [1, 0, 2]):
            assert torch.allclose(model(x), twin(x), atol=1e-6)
        assert torch.equal(model(x), before)


def test_the_path_length_split_refuses_a_transformer(task):
    with pytest.raises(SkipvizValueError, match="ResidualMLP"):
        paths.gradient_by_path_length(tiny(), task.x_test[:4], task.y_test[:4])


# ---------------------------------------------------------------------------- the landscape


def test_the_fast_engine_refuses_the_transformer_with_a_reason(task):
    proof = graph.prove(tiny(), task.x_train[:4])
    assert proof.graph is None
    assert "module 'tokens': Embedding has parameters" in proof.reason


def test_landscape_slices_of_a_transformer_use_the_reference_path_and_score_positions(task):
    model = tiny()
    direction = landscape.random_direction(model, seed=0)
    line = landscape.surface_1d(model, task, direction, points=3, cache=False, progress=False)
    assert line.method in ("vmap", "loop")
    assert line.accuracies.shape == (3,)
    middle = training.evaluate(model, task, "train")
    assert line.losses[1].item() == pytest.approx(middle.loss, rel=1e-5)
    assert line.accuracies[1].item() == pytest.approx(middle.accuracy)


# ---------------------------------------------------------------------------- the exercises


def test_the_checks_refuse_the_packages_own_forward_and_accept_a_large_negative_mask():
    assert "own forward()" in exercises.check_causal_attention(lambda a, x: a(x)).message
    assert "own forward()" in exercises.check_pre_ln_block(lambda b, x: b(x)).message
    assert "own sublayer()" in exercises.check_pre_ln_block(
        lambda b, x: b.sublayer(b.sublayer(x, "attention"), "mlp")).message

    def big_negative(attention, x):
        batch, T, d = x.shape
        q, k, v = attention.qkv(x).view(batch, T, 3, attention.heads, d // attention.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // attention.heads)
        scores = scores + torch.triu(torch.full((T, T), -1e9, dtype=x.dtype), 1)
        return attention.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, T, d))

    assert exercises.check_causal_attention(big_negative).ok


def test_every_typical_mistake_is_named():
    from skipviz.exercises import nb09
    for hint, wrong in nb09.ATTENTION_MISTAKES.items():
        assert exercises.check_causal_attention(wrong).message == hint
    for hint, wrong in nb09.BLOCK_MISTAKES.items():
        assert exercises.check_pre_ln_block(wrong).message == hint


def test_the_checks_turn_errors_and_stubs_into_one_line():
    def stub(module, x):
        raise NotImplementedError

    assert exercises.check_causal_attention(stub).message.startswith("not done yet")
    assert "returned shape" in exercises.check_pre_ln_block(lambda b, x: x[:, :1]).message
    assert "ZeroDivisionError" in exercises.check_pre_ln_block(lambda b, x: 1 / 0).message
    assert "in place" in exercises.check_pre_ln_block(lambda b, x: x.add_(1)).message
    assert "float32" in exercises.check_pre_ln_block(lambda b, x: x.float()).message


def test_a_detached_branch_is_told_apart_from_a_wrong_output():
    def detached(block, x):
        x = x + block.attention(block.norm_attention(x)).detach()
        return x + block.mlp(block.norm_mlp(x))

    assert "wrong gradients" in exercises.check_pre_ln_block(detached).message
