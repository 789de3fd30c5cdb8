"""The plan's spools: what goes in comes out, in order, from any line on; the manifest
lines are the manifests' own; the components' records come out in component order."""

from __future__ import annotations

import json

import pytest

from remotebridge.jobfolder import INPUTS, OUTPUTS, Area
from remotebridge.prepare.plan import (
    HomeMap,
    HomeRecord,
    InputFile,
    InputMap,
    OutputFile,
    OutputList,
    Phase,
    Task,
    TaskList,
)
from remotebridge.prepare.spool import LineSpool, Spool, json_line


def test_lines_come_back_in_order_from_any_line() -> None:
    spool = LineSpool()
    lines = [f"{i}:" + "é" * (i % 3) + "x" * (i % 700) for i in range(20_000)]
    for line in lines:
        spool.add(line)
    assert len(spool) == len(lines)
    assert list(spool.lines()) == lines
    assert list(spool.lines(19_990)) == lines[19_990:]
    assert list(spool.lines(4095, 3)) == lines[4095:4098]
    assert list(spool.lines(len(lines))) == []
    spool.add("more")  # appending after a read goes on where it was
    assert list(spool.lines(len(lines) - 1)) == [lines[-1], "more"]


def test_a_spool_reads_back_what_it_was_given() -> None:
    spool = Spool[dict[str, int]](json.dumps, json.loads)
    spool += [{"a": i} for i in range(5)]
    assert list(spool) == [{"a": i} for i in range(5)] and len(spool) == 5
    assert list(spool.encoded(3)) == ['{"a": 3}', '{"a": 4}']


def test_tasks_by_phase_with_their_plan_lines() -> None:
    tasks = TaskList()
    tasks.append(Task(7, 1, Phase.CMD, ["prog", "a b"], 2, 1.5, "/l/7"))
    tasks.append(Task(9, 1, Phase.POST, ["post"], 1, 1.0))
    tasks.append(Task(0, 0, Phase.PRE, ["pre"], 1, 1.0))
    assert [t.task_id for t in tasks] == [0, 7, 9]
    assert tasks.ids(Phase.CMD) == [7] and tasks.count(Phase.POST) == 1 and len(tasks) == 3
    assert [json.loads(line) for line in tasks.lines()] == [t.record() for t in tasks]
    assert next(iter(tasks)) == Task(0, 0, Phase.PRE, ["pre"], 1, 1.0)


def test_manifest_lines_are_the_manifests_own() -> None:
    inputs, outputs = InputMap(), OutputList()
    items = [InputFile("/h/ä b", "/s/ä b", 5, Area.PERMANENT, True),
             InputFile("/h/c", "/s/c", 7, Area.SCRATCH, False)]
    for f in items:
        inputs[f.remote] = f
    outs = [OutputFile("/s/o", "/h/o", True, 3), OutputFile("/s/p", "/h/p", False, 4)]
    outputs.extend(outs)
    assert list(inputs.lines()) == [INPUTS.line(f) for f in items]
    assert list(inputs.values()) == items and "/s/c" in inputs and "/s/d" not in inputs
    assert (inputs.bytes, inputs.shared, outputs.permanent) == (12, 1, 1)
    assert list(outputs.encoded()) == [OUTPUTS.line(o) for o in outs] and list(outputs) == outs
    with pytest.raises(ValueError, match="already"):
        inputs["/s/c"] = items[1]
    summed = inputs.with_digests(lambda paths: {p: f"sum{p}" for p in paths}, batch=1)
    assert [f.sha256 for f in summed.values()] == ["sum/h/ä b", "sum/h/c"]
    assert [f.remote for f in summed.values()] == ["/s/ä b", "/s/c"] and "/s/c" in summed


@pytest.mark.parametrize("order", [[1, 2, 3], [3, 1, 2]])
def test_records_by_component_and_expected_in_component_order(order: list[int]) -> None:
    home = HomeMap()
    recs = {sid: [HomeRecord("t", {"id": sid, "n": n}, {"uri": f"/u{sid}.{n}", "fault": 0},
                             f"/s{sid}", ["bg"]) for n in range(2)] for sid in order}
    for sid in order:
        for r in recs[sid]:
            home.setdefault(sid, []).append(r)
    assert list(home) == order and home[order[0]] == recs[order[0]]
    assert dict(home.items()) == recs
    assert [json.loads(line) for line in home.lines(order[-1])] == \
        [r.record() for r in recs[order[-1]]]
    assert [json.loads(line) for line in home.expected_lines()] == \
        [r.expected(sid) for sid in sorted(recs) for r in recs[sid]]


@pytest.mark.parametrize("value", [
    {"a": [1, 2.5, -0.0, 1e300, float("inf"), float("nan")], "b": None, "c": True},
    {"argv": ["x y", "é\u2028\ud800", "\t\"\\"], 3: {"n": 10**30}}, "plain", [], {}])
def test_json_line_is_json_dumps(value: object) -> None:
    assert json_line(value) == json.dumps(value)


def test_json_line_refuses_what_json_dumps_refuses() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        json_line({"x": object()})


@pytest.mark.parametrize("task", [
    Task(1, 2, Phase.CMD, ["python3", "/a/b.py", "--x", "3"], 2, 150.0, "/l/1"),
    Task(1, 2, Phase.PRE, ["a"], 1, 0, ""), Task(1, 2, Phase.CMD, [], 1, 1.5, ""),
    Task(1, 2, Phase.CMD, ['q"uote', "back\\slash", "tab\t", "é", "\x7f"], 1, 1e-7, "/l"),
    Task(1, 2, Phase.POST, ["a"], 1, float("nan"), "é"), Task(True, 2, Phase.CMD, ["a"]),
    Task(1, 2, Phase.CMD, ["a", 3], 1, 2.0)])  # type: ignore[list-item]
def test_task_lines_are_the_json_of_their_records(task: Task) -> None:
    tasks = TaskList()
    tasks.append(task)
    assert list(tasks.lines()) == [json.dumps(task.record())]


def test_task_lines_escape_every_character_as_json_does() -> None:
    tasks = [Task(i, 1, Phase.CMD, [f"a{chr(i)}b", "c"], 1, 1.0, chr(i)) for i in range(300)]
    spooled = TaskList()
    spooled.extend(tasks)
    assert list(spooled.lines()) == [json.dumps(t.record()) for t in tasks]


def test_text_blocks_are_the_lines_with_newlines() -> None:
    spool = LineSpool()
    spool.BLOCK = 64  # many blocks, lines cut across them
    lines = [f"{i}:" + "é" * (i % 5) + "y" * (i % 150) for i in range(3000)]
    for line in lines:
        spool.add(line)
    for start, count in [(0, None), (7, 1), (100, 901), (2999, 5), (3000, None)]:
        want = lines[start:] if count is None else lines[start:start + count]
        blocks = list(spool.text(start, count))
        assert "".join(blocks) == "".join(line + "\n" for line in want)
        assert all(b.endswith("\n") for b in blocks)


def test_outputs_and_inputs_added_without_rows_are_the_same_lines() -> None:
    rows, quick = OutputList(), OutputList()
    for o in [OutputFile("/s/o", "/h/ö", True, 3), OutputFile("/s/p", "/h/p", False, 4)]:
        rows.append(o)
        quick.add(o.remote, o.local, o.permanent, o.stage_id)
    assert list(quick.encoded()) == list(rows.encoded()) and quick.permanent == 1
    inputs, f = InputMap(), InputFile("/h/c", "/s/c", 7, Area.SCRATCH, True)
    key = inputs.key(f.remote)
    assert not inputs.has_key(key)
    inputs.add(key, f)
    assert inputs.has_key(key) and "/s/c" in inputs and list(inputs.lines()) == [INPUTS.line(f)]
    with pytest.raises(ValueError, match="already"):
        inputs.add(key, f)


@pytest.mark.parametrize("order", [[3, 5, 3], [5, 3, 5], [1, 1, 2]])
def test_expected_lines_by_component_when_one_comes_back(order: list[int]) -> None:
    home = HomeMap()
    added = [(sid, HomeRecord("t", {"id": sid, "n": n}, {"uri": f"/u{n}"}, "/s", []))
             for n, sid in enumerate(order)]
    for sid, rec in added:
        home.add(sid, rec)
    want = [rec.expected(sid) for sid, rec in sorted(added, key=lambda a: a[0])]
    assert [json.loads(line) for line in home.expected_lines()] == want
    assert "".join(home.expected_text()) == "".join(json.dumps(w) + "\n" for w in want)
