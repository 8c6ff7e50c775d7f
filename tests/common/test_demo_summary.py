"""scripts/demo.py's summary: every project's OUT/<project>/headline.json into one table in the root README."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.py"
sys.path.insert(0, str(DEMO.parent))
import demo  # noqa: E402  (scripts/ is no package)

LAQ_ROWS = [
    {"kind": "model", "name": "laq_tiny", "metric": "val/psnr", "value": 19.3456, "higher_is_better": True,
     "command": "python laq/scripts/2_train_laq.py experiment=laq_debug"},
    {"kind": "baseline", "name": "copy frame t", "metric": "val/psnr", "value": 17.0, "higher_is_better": True,
     "command": "python laq/scripts/2_train_laq.py experiment=laq_debug"},
]
STEREO_ROWS = [{"kind": "real", "name": "Middlebury motorcycle", "metric": "eval/epe", "value": 3.25,
                "higher_is_better": False, "command": "python stereo/scripts/evaluate.py --a x|y"}]


def write_headline(out: Path, project: str, rows) -> None:
    (out / project).mkdir(parents=True, exist_ok=True)
    (out / project / "headline.json").write_text(json.dumps({"rows": rows}))


def test_summary_rewrites_only_the_marked_section_of_the_readme(tmp_path):
    out = tmp_path / "demo_runs"
    write_headline(out, "laq", LAQ_ROWS)
    write_headline(out, "stereo", STEREO_ROWS)
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\nbefore\n{demo.HEADLINE_BEGIN}\nold table\n{demo.HEADLINE_END}\nafter\n")
    result = subprocess.run([sys.executable, str(DEMO), "--out", str(out), "--summary_only", "--readme", str(readme)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = readme.read_text()
    assert text.startswith("# Title\nbefore\n" + demo.HEADLINE_BEGIN) and text.endswith(demo.HEADLINE_END + "\nafter\n")
    assert "old table" not in text
    section = text.split(demo.HEADLINE_BEGIN)[1].split(demo.HEADLINE_END)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| project")]
    assert [line.split(" | ")[0] for line in lines] == ["| laq", "| laq", "| vae_latent", "| shadow", "| stereo",
                                                       "| vidsgg"]  # project order, every project once at least
    assert lines[0] == ("| laq | model | laq_tiny | val/psnr ↑ | 19.35 | "
                        "`python laq/scripts/2_train_laq.py experiment=laq_debug` |")
    assert lines[4] == ("| stereo | real | Middlebury motorcycle | eval/epe ↓ | 3.25 | "
                        "`python stereo/scripts/evaluate.py --a x\\|y` |")  # a pipe does not split the cell
    for missing, line in (("vae_latent", lines[2]), ("shadow", lines[3]), ("vidsgg", lines[5])):
        assert f"**no headline**: `{missing}/headline.json` was not written" in line
    assert lines[0] in result.stdout  # the same table is printed


@pytest.mark.parametrize("rows, message", [
    ([{**LAQ_ROWS[0], "kind": "ours"}], "kind 'ours' is not one of"),
    ([{key: value for key, value in LAQ_ROWS[0].items() if key != "command"}], "'command' must be str"),
    ([{**LAQ_ROWS[0], "value": "19.3"}], "'value' must be a number"),
    ([{**LAQ_ROWS[0], "value": True}], "'value' must be a number"),
    ({"model": 1}, "'rows' must be a list"),
])
def test_a_malformed_headline_is_an_error_naming_the_file_and_row(tmp_path, rows, message):
    write_headline(tmp_path, "laq", rows)
    with pytest.raises(demo.HeadlineError, match=message) as caught:
        demo.headline_table(tmp_path)
    assert str(tmp_path / "laq" / "headline.json") in str(caught.value)


def test_a_readme_without_markers_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(demo.HeadlineError, match="headline:begin"):
        demo.rewrite_readme_section(readme, "| table |")
    assert readme.read_text() == "# no markers\n"
