from PIL import Image

from lzn.cli.main import main


def test_lzn_zones_writes_png_and_reports(tmp_path, capsys):
    rc = main(["zones", "--out", str(tmp_path), "--anchors", "4", "--grid", "40", "--per-anchor", "30", "--steps", "30"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "zone picture:" in out and "pooled latents" in out
    with Image.open(tmp_path / "zones.png") as im:
        assert im.format == "PNG"
