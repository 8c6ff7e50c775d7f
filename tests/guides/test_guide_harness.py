"""The harness of the guide suite reads the guides' commands exactly."""
import pytest

from tests.guides.conftest import GuideCommand, assert_quotes_guide, guide_command_at, run_guide_command


def test_continuation_lines_are_joined():
    # stereo guide, line 50: `accelerate launch scripts/train.py \` followed by its options
    command = guide_command_at("stereo", 50)
    assert command.startswith("accelerate launch scripts/train.py --config")


def test_a_table_entry_that_misquotes_the_guide_fails():
    with pytest.raises(AssertionError, match="line 47"):
        assert_quotes_guide("stereo", GuideCommand(47, "python scripts/train.py --config other.json"))
    assert_quotes_guide("stereo", GuideCommand(47, "python scripts/train.py --config configs/train/stereo_v1.json"))


def test_substitutions_change_only_what_they_name():
    entry = GuideCommand(1, "python scripts/train.py --data_dir /data/x --batch_size 32",
                         (("/data/x", "{data}"), ("--batch_size 32", "--batch_size 2")))
    assert entry.command(data="/tmp/d") == "python scripts/train.py --data_dir /tmp/d --batch_size 2"


def test_commands_run_from_the_project_folder_with_the_venv_python():
    result = run_guide_command("stereo", "python -c 'import os, sys; print(os.getcwd()); print(sys.prefix)'")
    cwd, prefix = result.stdout.split()
    assert cwd.endswith("/stereo")
    import sys
    assert prefix == sys.prefix
