"""The project's front door: the README's commands, CI, and packaging stay consistent."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.startswith("python3 -m venv")]


def test_readme_has_exactly_the_two_setup_commands():
    commands = _readme_commands()
    assert len(commands) == 2
    main, tests = commands
    assert main.endswith("uvtag demo")
    assert tests.endswith("python -m pytest -q")
    for command in commands:  # torch always pinned, never resolved freely by pip
        assert re.search(r"torch==\d", command)


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci


def test_ci_runs_the_engine_tests_again_capped_to_avx2():
    ci = (ROOT / ".ci" / "run").read_text().replace("\\\n", " ")
    capped = [line for line in ci.splitlines() if "ONEDNN_MAX_CPU_ISA=AVX2" in line]
    assert len(capped) == 1
    for part in ("ATEN_CPU_CAPABILITY=avx2", "MKL_ENABLE_INSTRUCTIONS=AVX2", "-m pytest", "tests/test_engine.py",
                 "tests/test_predict.py", "tests/test_model.py", "tests/test_cpu_kernels.py"):
        assert part in capped[0]


def test_tagging_dependencies_do_not_pull_timm_or_torchvision():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    assert "timm" not in core and "torchvision" not in core
    assert project["scripts"]["uvtag"] == "uvtag.cli:app"


def test_tagging_path_never_imports_timm():
    import subprocess
    import sys

    code = ("import sys, uvtag, uvtag.cli, uvtag.tagger, uvtag.batch.run; "
            "print('timm' in sys.modules, 'torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
