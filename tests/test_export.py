"""A trained model out of vaelab: the exported encoder and decoder programs reproduce the checkpoint's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import SWEPT_MODELS, small_batch
from vaelab.cli_tools import export_command as main
from vaelab.figures.model import grid_latents
from vaelab.run.checkpoints import load_model


@pytest.mark.parametrize("job", [0, 1, 2])  # vae, conv_vae and cond_conv_vae of the shared sweep
def test_the_exported_programs_reproduce_the_checkpoints_images(
    trained_sweep: Path, job: int, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = trained_sweep / str(job) / "checkpoints" / "last.ckpt"
    main([str(checkpoint), "--out", str(tmp_path / "export")])
    written = capsys.readouterr().out.split()
    assert [Path(p).name for p in written] == ["encoder.pt2", "decoder.pt2", "export.json"]
    description = json.loads((tmp_path / "export" / "export.json").read_text())
    model = load_model(checkpoint)
    assert description["latent_dim"] == model.latent_dim and description["num_classes"] == model.num_classes
    assert description["model_class"].endswith(type(model).__name__)

    decoder = torch.export.load(tmp_path / "export" / "decoder.pt2").module()
    encoder = torch.export.load(tmp_path / "export" / "encoder.pt2").module()
    z = grid_latents(torch.linspace(-2, 2, 5), torch.linspace(2, -2, 5), model.latent_dim)  # any batch size: 25
    images, image_labels = small_batch(7)
    # A conditional model's programs take the labels; another's the images (or z) alone.
    labels, image_labels = ((torch.arange(len(z)) % 10,), (image_labels,)) if model.num_classes else ((), ())
    with torch.no_grad():
        expected = model.decode(z, *labels)
        assert torch.allclose(decoder(z, *labels), expected, atol=1e-5)
        for exported, own in zip(encoder(images, *image_labels), model.encode(images, *image_labels)):
            assert torch.allclose(exported, own, atol=1e-5)
    assert f"{SWEPT_MODELS[job]}" in (trained_sweep / str(job) / ".hydra" / "overrides.yaml").read_text()


def test_an_untrusted_model_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "vaelab_model_class": "elsewhere.Model"}, path)
    with pytest.raises(SystemExit) as stopped:
        main([str(path)])
    assert stopped.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "elsewhere.Model" in lines[0] and "--trusted-models elsewhere.Model" in lines[0]
    assert not (tmp_path / "foreign_export").exists()


def error_line(capsys: pytest.CaptureFixture, *argv: str) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(list(argv))
    assert stopped.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in lines[0], lines
    return lines[0]


def test_an_export_names_its_checkpoint_and_is_never_replaced_silently(
    trained_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    first, second = (trained_sweep / str(job) / "checkpoints" / "last.ckpt" for job in (0, 1))
    out = tmp_path / "export"
    main([str(first), "--out", str(out)])
    capsys.readouterr()
    assert json.loads((out / "export.json").read_text())["checkpoint"] == str(first.resolve())
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    line = error_line(capsys, str(second), "--out", str(out))
    assert "already holds an export" in line and str(first.resolve()) in line and "--force" in line
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    main([str(second), "--out", str(out), "--force"])
    assert json.loads((out / "export.json").read_text())["checkpoint"] == str(second.resolve())
    # --out naming a file, and a checkpoint whose hyperparameters build no model: one line each.
    (tmp_path / "file").write_text("")
    assert "is a file" in error_line(capsys, str(first), "--out", str(tmp_path / "file"))
    checkpoint = torch.load(first, weights_only=True)
    checkpoint["hyper_parameters"]["latent_dim"] = 2**40
    torch.save(checkpoint, tmp_path / "huge.ckpt")
    assert "do not build a VAE" in error_line(capsys, str(tmp_path / "huge.ckpt"))
