"""tinyres.report: the results table's rows come from the run directories' own files."""

import os

import pytest

from tinyres import report, train
from tinyres import runs as run_files


@pytest.fixture
def two_runs(cifar_dir, tmp_path):
    """A finished ResNet-8 and an unfinished plain-8, evaluated every 2 iterations."""
    common = ["--depth", "8", "--subset", "48", "--batch-size", "8", "--eval-every", "2", "--no-progress",
              "--data-dir", str(cifar_dir)]
    resnet, plain = str(tmp_path / "resnet8"), str(tmp_path / "plain8")
    train.main(common + ["--iterations", "4", "--out", resnet])
    train.main(common + ["--iterations", "8", "--plain", "--stop-after-minutes", "0", "--out", plain])
    train.main(common + ["--iterations", "8", "--plain", "--resume", "--out", plain, "--stop-after-minutes", "0"])
    with open(os.path.join(resnet, "log.txt"), "w") as f:
        f.write("# 2026-12-01T10:00Z | 2 cores (Some CPU) | commit aaaaaaa\n# numpy ...\nlog lines\n"
                "# 2026-12-02T10:00Z | 2 cores (Some CPU) | commit bbbbbbb\n# python -m tinyres.train ...\n")
    return resnet, plain


def metrics(path):
    with open(os.path.join(path, "metrics.csv")) as f:
        header, *rows = [line.strip().split(",") for line in f]
    return [dict(zip(header, row)) for row in rows]


def test_a_row_holds_the_last_evaluation_its_time_and_speed_and_the_papers_number(two_runs):
    resnet, _ = two_runs
    last = metrics(resnet)[-1]
    [row] = report.table_rows([resnet])
    seconds = float(last["train_seconds"])
    assert row[:5] == ["`resnet8`", "ResNet-8", "4 of 4", f"{float(last['train_error']):.2%}",
                       f"{float(last['test_error']):.2%}"]
    assert row[5] == f"{seconds / 3600:.1f} h" and row[6] == f"{4 * 8 / seconds:.0f}"
    assert row[7] == "2 cores (Some CPU); 2 segments, commits aaaaaaa..bbbbbbb"
    assert row[8] == "—"  # no ResNet-8 in Table 6


def test_the_papers_number_stands_only_beside_a_run_on_the_whole_data(cifar_dir, tmp_path):
    common = ["--depth", "20", "--batch-size", "8", "--iterations", "2", "--eval-every", "2", "--no-progress",
              "--data-dir", str(cifar_dir)]
    whole, part, held_out = str(tmp_path / "whole"), str(tmp_path / "part"), str(tmp_path / "held_out")
    train.main(common + ["--out", whole])
    train.main(common + ["--subset", "48", "--out", part])
    train.main(common + ["--validation", "24", "--out", held_out])
    assert [row[8] for row in report.table_rows([whole, part, held_out])] == ["8.75%", "—", "—"]


def test_paper_numbers_are_table_6s_for_resnets_only():
    assert report.PAPER_TEST_ERROR[20] == 8.75 and report.PAPER_TEST_ERROR[56] == 6.97


def test_at_picks_an_earlier_evaluation_and_names_the_missing_one(two_runs):
    _, plain = two_runs
    rows = metrics(plain)
    [row] = report.table_rows([plain], at=int(rows[0]["iteration"]))
    assert row[1] == "plain-8" and row[2] == f"{rows[0]['iteration']} of 8" and row[4] == f"{float(rows[0]['test_error']):.2%}"
    assert row[7] == "(not logged)"
    with pytest.raises(ValueError, match="logged no evaluation at iteration 3 "):
        report.table_rows([plain], at=3)


def test_the_command_prints_a_markdown_table_or_one_error_line(two_runs, tmp_path, capsys):
    assert report.main(list(two_runs)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| run | network |") and all(line.count("|") == 10 for line in lines)
    with pytest.raises(SystemExit) as stopped:
        report.main([str(tmp_path / "nothing")])
    assert stopped.value.code == 2
    assert "does not exist: give a run directory" in capsys.readouterr().err


def test_errors_at_puts_the_runs_side_by_side_and_leaves_a_blank_where_one_has_no_evaluation(two_runs):
    resnet, plain = two_runs  # ResNet-8 evaluated at 2 and 4; plain-8 stopped earlier or later
    runs = [run_files.load(resnet), run_files.load(plain)]
    by_iteration = [{int(r["iteration"]): r for r in metrics(path)} for path in two_runs]
    iterations = sorted(set(by_iteration[0]) | set(by_iteration[1]))
    assert set(by_iteration[0]) != set(by_iteration[1])  # so that some row has a blank pair
    lines = report.errors_at(runs).splitlines()
    assert lines[0].split() == ["iteration", "lr", "ResNet-8", "train", "ResNet-8", "test", "plain-8", "train", "plain-8", "test"]
    assert len(lines) == 1 + len(iterations)
    for line, iteration in zip(lines[1:], iterations):
        expected = [f"{iteration:,}", f"{float(next(r[iteration] for r in by_iteration if iteration in r)['lr']):g}"]
        for rows in by_iteration:
            if iteration in rows:
                expected += [f"{float(rows[iteration]['train_error']):.2%}", f"{float(rows[iteration]['test_error']):.2%}"]
        assert line.split() == expected
        assert len(line) == len(lines[0])  # a missing evaluation is a blank of the column's width
    assert report.errors_at(runs, [2]).splitlines()[1:] == [lines[1 + iterations.index(2)]]
    with pytest.raises(ValueError, match="none of the runs logged an evaluation at iteration 3"):
        report.errors_at(runs, [3])
