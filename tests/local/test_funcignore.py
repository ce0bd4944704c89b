"""local/funcignore.py reads .funcignore as gitignore syntax, as azd and Core Tools do."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.funcignore import FuncIgnore


@pytest.mark.parametrize(
    ("patterns", "path", "is_dir", "excluded"),
    [
        # A name without a slash matches at any depth; a trailing slash only directories.
        (["__pycache__/"], "shared/core/__pycache__", True, True),
        (["__pycache__/"], "shared/core/__pycache__/uui.cpython-311.pyc", False, True),
        (["build/"], "build", False, False),
        (["README.md"], "docs/README.md", False, True),
        # A slash at the start or in the middle anchors the pattern at the root.
        (["/routing.yaml"], "examples/routing.yaml", False, False),
        (["/routing.yaml"], "routing.yaml", False, True),
        (["infra/bicep"], "infra/bicep/main.bicep", False, True),
        (["infra/bicep"], "x/infra/bicep", True, False),
        # "*" and "?" stop at a slash; "**" spans directories.
        (["*.md"], "docs/deploy.md", False, True),
        (["docs/*.md"], "docs/sub/deploy.md", False, False),
        (["docs/**/*.md"], "docs/sub/deep/deploy.md", False, True),
        (["docs/**/*.md"], "docs/deploy.md", False, True),
        (["**/tests"], "a/b/tests", True, True),
        (["local/**"], "local/emulator/server.py", False, True),
        (["local/**"], "local", True, False),
        (["?.txt"], "ab.txt", False, False),
        (["[abc].txt"], "b.txt", False, True),
        (["[!abc].txt"], "b.txt", False, False),
        (["a[/]b"], "a/b", False, False),
        # ".git*" is a glob, not a prefix of the path.
        ([".git*"], ".gitignore", False, True),
        ([".git*"], "shared/.github", True, True),
        ([".git*"], "sh.git", False, False),
        # The last match decides; a negation cannot re-include inside an excluded directory.
        (["*.yaml", "!routing.yaml"], "routing.yaml", False, False),
        (["*.yaml", "!routing.yaml"], "azure.yaml", False, True),
        (["examples/", "!examples/routing.example.yaml"], "examples/routing.example.yaml", False, True),
        # Comments, blanks and escapes.
        (["# routing.yaml", ""], "# routing.yaml", False, False),
        (["\\#notes"], "#notes", False, True),
        (["\\!important"], "!important", False, True),
        (["routing.yaml   "], "routing.yaml", False, True),
    ],
)
def test_gitignore_semantics(patterns: list[str], path: str, is_dir: bool, excluded: bool) -> None:
    assert FuncIgnore(patterns).excludes(path, is_dir) is excluded


def test_walk_lists_the_kept_files_and_skips_excluded_directories(tmp_path: Path) -> None:
    for name in ("a.py", "pkg/b.py", "pkg/__pycache__/b.cpython-311.pyc", "tests/test_a.py", "notes.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / ".funcignore").write_text("\ufeff__pycache__/\ntests/\n*.md\n.funcignore\n", encoding="utf-8")
    assert list(FuncIgnore.read(tmp_path).walk(tmp_path)) == ["a.py", "pkg/b.py"]


def test_walk_refuses_a_symbolic_link_it_would_ship(tmp_path: Path) -> None:
    (tmp_path / "real.py").write_text("x")
    (tmp_path / "link.py").symlink_to(tmp_path / "real.py")
    with pytest.raises(ValueError, match=r"link\.py: a symbolic link"):
        list(FuncIgnore([]).walk(tmp_path))
    assert list(FuncIgnore(["link.py"]).walk(tmp_path)) == ["real.py"]
