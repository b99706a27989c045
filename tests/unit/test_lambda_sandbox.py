"""The Lambda emulator's cgroup logic (targets.awslambda.sandbox) on a fake cgroup root:
where its cgroups go, the limits it writes, what it says when it cannot, and the stale
ones it removes."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from targets.awslambda.proc import process_cpu_ms
from targets.awslambda.sandbox import (
    Layout,
    Shaper,
    detect,
    exit_description,
    launch_command,
    own_cgroups,
    remove_stale,
)

V1_PROC = """12:pids:/
6:freezer:/
4:memory:/jobs/abc
2:cpu,cpuacct:/user.slice
0::/
"""


def fake_v1(root: Path, controllers: tuple[str, ...] = ("cpu", "memory", "freezer")) -> None:
    """A cgroup v1 tree as /proc/self/cgroup above places this process in it."""
    own = {"cpu": "user.slice", "memory": "jobs/abc", "freezer": ""}
    for controller in controllers:
        d = root / controller / own[controller]
        d.mkdir(parents=True)
        (d / "cgroup.procs").touch()


def test_own_cgroups_reads_v1_controllers_and_the_v2_path() -> None:
    paths = own_cgroups(V1_PROC)
    assert paths["cpu"] == paths["cpuacct"] == "/user.slice"
    assert paths["memory"] == "/jobs/abc"
    assert paths["freezer"] == "/"
    assert paths[""] == "/"


def test_detect_v1_nests_under_each_controllers_own_path(tmp_path: Path) -> None:
    fake_v1(tmp_path)
    layout = detect(tmp_path, V1_PROC)
    assert layout == Layout(1, {"cpu": tmp_path / "cpu" / "user.slice",
                                "memory": tmp_path / "memory" / "jobs" / "abc",
                                "freezer": tmp_path / "freezer"})


def test_detect_v1_without_freezer_still_shapes_cpu_and_memory(tmp_path: Path) -> None:
    fake_v1(tmp_path, ("cpu", "memory"))
    layout = detect(tmp_path, V1_PROC)
    assert isinstance(layout, Layout)
    assert set(layout.dirs) == {"cpu", "memory"}


def test_detect_says_why_without_a_memory_controller(tmp_path: Path) -> None:
    fake_v1(tmp_path, ("cpu", "freezer"))
    reason = detect(tmp_path, V1_PROC)
    assert isinstance(reason, str)
    assert "memory" in reason


def test_detect_v2_needs_cpu_and_memory_controllers(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset io pids\n")
    reason = detect(tmp_path, "0::/\n")
    assert isinstance(reason, str)
    assert "cpu or memory" in reason
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "cgroup.procs").touch()
    assert detect(tmp_path, "0::/job\n") == Layout(2, {"unified": tmp_path / "job"})


def test_v1_environment_gets_quota_memory_limit_and_is_removed(tmp_path: Path) -> None:
    fake_v1(tmp_path)
    shaper = Shaper(512, 4, root=tmp_path, proc_text=V1_PROC)
    described = shaper.describe()
    assert described["enforced"] is True
    assert (described["cpu"], described["memory"], described["freeze"]) == \
        ("cgroup-v1", "cgroup-v1", "cgroup-v1")
    base = tmp_path / "cpu" / "user.slice" / f"deploybench-{os.getpid()}"
    assert base.is_dir()
    enclosure = shaper.enclose(7)
    cpu = base / "env-7"
    # 512 / 1,769 of a 100 ms period.
    assert (cpu / "cpu.cfs_quota_us").read_text() == "28943"
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    memory = tmp_path / "memory" / "jobs" / "abc" / f"deploybench-{os.getpid()}" / "env-7"
    assert (memory / "memory.limit_in_bytes").read_text() == str(512 * 2**20)
    assert cpu / "cgroup.procs" in enclosure.join
    assert memory / "cgroup.procs" in enclosure.join
    # A fake cgroup holds regular files, which rmdir refuses: emptied, it goes.
    for d in enclosure.dirs.values():
        for f in d.iterdir():
            f.unlink()
    assert enclosure.remove()
    assert not cpu.exists()
    shaper.close()
    assert not base.exists()


def test_the_function_weighs_as_many_processes_as_it_has_environments(
        tmp_path: Path) -> None:
    fake_v1(tmp_path)
    shaper = Shaper(1769, 1, root=tmp_path, proc_text=V1_PROC)
    base = tmp_path / "cpu" / "user.slice" / f"deploybench-{os.getpid()}"
    shaper.weigh(32)
    assert (base / "cpu.shares").read_text() == str(32 * 1024)
    shaper.weigh(0)  # never below one process's weight
    assert (base / "cpu.shares").read_text() == "1024"
    shaper.close()


def test_the_share_is_capped_by_the_target_cpus(tmp_path: Path) -> None:
    fake_v1(tmp_path)
    shaper = Shaper(10240, 2, root=tmp_path, proc_text=V1_PROC)
    described = shaper.describe()
    assert described["cpu_share"] == 5.7886
    assert described["cpu_share_effective"] == 2.0
    shaper.enclose(1)
    quota = tmp_path / "cpu" / "user.slice" / f"deploybench-{os.getpid()}" / "env-1"
    assert (quota / "cpu.cfs_quota_us").read_text() == "200000"


def test_without_cgroups_nothing_is_enforced_and_the_reason_is_given(tmp_path: Path) -> None:
    shaper = Shaper(1769, 2, root=tmp_path, proc_text=V1_PROC)
    described = shaper.describe()
    assert described["enforced"] is False
    assert described["cpu"] == described["memory"] == "none"
    assert described["freeze"] == "sigstop"  # the freeze does not need a cgroup
    assert "cpu" in (described["reason"] or "")
    assert shaper.enforced_share is None
    assert shaper.enclose(1).join == []


def test_sandbox_off_is_said_and_no_freeze_is_none(tmp_path: Path) -> None:
    fake_v1(tmp_path)
    shaper = Shaper(1769, 2, mode="off", freeze=False, root=tmp_path, proc_text=V1_PROC)
    assert shaper.describe()["reason"] == "--sandbox off"
    assert shaper.describe()["freeze"] == "none"
    assert not list((tmp_path / "cpu" / "user.slice").glob("deploybench-*"))


def test_stale_cgroups_of_dead_emulators_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()  # its PID is now free (reused only after the kernel wraps around)
    stale = tmp_path / f"deploybench-{dead.pid}"
    (stale / "env-1").mkdir(parents=True)
    (stale / "env-2").mkdir()
    mine = tmp_path / f"deploybench-{os.getpid()}"
    (mine / "env-1").mkdir(parents=True)
    other = tmp_path / "someone-else"
    other.mkdir()
    removed = remove_stale([tmp_path])
    assert not stale.exists()
    assert set(removed) == {stale, stale / "env-1", stale / "env-2"}
    assert (mine / "env-1").is_dir()  # a live emulator's
    assert other.is_dir()


def test_a_stale_cgroup_that_is_not_empty_stays(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"deploybench-{dead.pid}"
    stale.mkdir()
    (stale / "cgroup.procs").touch()  # rmdir refuses, as the kernel's would with a process
    assert remove_stale([tmp_path]) == []
    assert stale.exists()


def test_launch_command_joins_every_cgroup_before_the_program(tmp_path: Path) -> None:
    files = [tmp_path / "a", tmp_path / "b"]
    argv = launch_command(files, ["sh", "-c", "echo $$"])
    pid = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    # The same PID wrote itself to each file, then became the program (exec).
    assert [f.read_text().strip() for f in files] == [pid, pid]
    assert launch_command([], ["x"]) == ["x"]


def test_launch_command_fails_clearly_when_it_cannot_join(tmp_path: Path) -> None:
    argv = launch_command([tmp_path / "missing" / "cgroup.procs"], ["true"])
    done = subprocess.run(argv, check=False, capture_output=True, text=True)
    assert done.returncode == 111
    assert "cannot join cgroup" in done.stderr


@pytest.mark.parametrize(("code", "said"), [
    (-signal.SIGKILL, "signal: killed"), (-signal.SIGSEGV, "signal: segmentation fault"),
    (1, "exit status 1"), (-signal.SIGUSR1, "signal: SIGUSR1"),
])
def test_exits_are_worded_as_lambda_words_them(code: int, said: str) -> None:
    assert exit_description(code) == said


def test_v2_delegates_controllers_and_writes_cpu_max_and_memory_max(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    own = tmp_path / "job"
    own.mkdir()
    (own / "cgroup.procs").touch()
    shaper = Shaper(512, 4, root=tmp_path, proc_text="0::/job\n")
    described = shaper.describe()
    assert (described["cpu"], described["memory"], described["freeze"]) == \
        ("cgroup-v2", "cgroup-v2", "cgroup-v2")
    base = own / f"deploybench-{os.getpid()}"
    assert (own / "cgroup.subtree_control").read_text() == "+cpu +memory"
    assert (base / "cgroup.subtree_control").read_text() == "+cpu +memory"
    (base / "env-3").mkdir()
    (base / "env-3" / "memory.swap.max").write_text("max")
    enclosure = shaper.enclose(3)
    assert (base / "env-3" / "cpu.max").read_text() == "28943 100000"
    assert (base / "env-3" / "memory.max").read_text() == str(512 * 2**20)
    assert (base / "env-3" / "memory.swap.max").read_text() == "0"
    (base / "env-3" / "memory.peak").write_text(f"{300 * 2**20}\n")
    assert enclosure.peak_mb() == 300.0
    (base / "env-3" / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    assert enclosure.oom_killed()


def test_the_v1_freezer_is_written_and_the_thaw_timed(tmp_path: Path) -> None:
    fake_v1(tmp_path)
    enclosure = Shaper(1769, 2, root=tmp_path, proc_text=V1_PROC).enclose(1)
    state = enclosure.dirs["freezer"] / "freezer.state"
    assert enclosure.thaw(123) is None  # not frozen: nothing to thaw
    enclosure.freeze(123)
    assert state.read_text() == "FROZEN"
    thaw_ms = enclosure.thaw(123)
    assert state.read_text() == "THAWED"
    assert thaw_ms is not None
    assert 0 <= thaw_ms < 1000


def test_without_a_freezer_sigstop_stops_the_process_group(tmp_path: Path) -> None:
    shaper = Shaper(1769, 2, root=tmp_path, proc_text=V1_PROC)  # no cgroups here
    enclosure = shaper.enclose(1)
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        enclosure.freeze(child.pid)
        assert _state(child.pid, {"T"}) == "T"  # stopped
        assert enclosure.thaw(child.pid) is not None
        assert _state(child.pid, {"S", "R"}) in {"S", "R"}
    finally:
        child.kill()
        child.wait()


def test_an_environment_is_frozen_only_once_idle_a_moment(tmp_path: Path) -> None:
    """Back-to-back invocations are not frozen in between (the freeze and thaw would cost
    the target CPU); an environment still idle after the delay is; a thaw cancels it."""
    shaper = Shaper(1769, 2, root=tmp_path, proc_text=V1_PROC)  # no cgroups: SIGSTOP
    enclosure = shaper.enclose(1)
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)

    async def scenario() -> list[str]:
        seen = []
        enclosure.freeze_after(child.pid, 0.05, lambda: True)
        seen.append(_state(child.pid, {"S", "R"}))  # not yet
        assert enclosure.thaw(child.pid) is None  # the next event came first: no freeze
        await asyncio.sleep(0.1)
        seen.append(_state(child.pid, {"S", "R"}))
        enclosure.freeze_after(child.pid, 0.05, lambda: False)  # busy again when due
        await asyncio.sleep(0.1)
        seen.append(_state(child.pid, {"S", "R"}))
        enclosure.freeze_after(child.pid, 0.05, lambda: True)
        await asyncio.sleep(0.1)
        seen.append(_state(child.pid, {"T"}))
        assert enclosure.thaw(child.pid) is not None
        return seen

    try:
        running, stopped = {"S", "R"}, "T"  # sleeping or just starting; stopped
        seen = asyncio.run(scenario())
        assert [state in running for state in seen[:3]] == [True] * 3, seen
        assert seen[3] == stopped
    finally:
        child.kill()
        child.wait()


def _state(pid: int, expect: set[str]) -> str:
    """The process's state letter from /proc, once it is one of ``expect`` (a signal
    lands a moment after it is sent) or after a second."""
    deadline = time.monotonic() + 1.0
    while True:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in expect or time.monotonic() > deadline:
            return state
        time.sleep(0.005)


def test_a_stale_frozen_environment_is_thawed_so_it_can_die(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    env = tmp_path / f"deploybench-{dead.pid}" / "env-1"
    env.mkdir(parents=True)
    (env / "freezer.state").write_text("FROZEN")
    remove_stale([tmp_path])
    assert (env / "freezer.state").read_text() == "THAWED"


@pytest.mark.parametrize(("memory_mb", "cpus", "threads"),
                         [(512, 4, 1), (1769, 4, 1), (3008, 4, 2), (3008, 1, 1), (10240, 4, 4)])
def test_torch_threads_are_the_vcpus_aws_shows_the_size(tmp_path: Path, memory_mb: int,
                                                        cpus: int, threads: int) -> None:
    """On AWS PyTorch runs as many threads as the size's vCPUs (nproc): one thread at
    3,008 MB would make every size above 1,769 MB look no faster than it."""
    fake_v1(tmp_path)
    assert Shaper(memory_mb, cpus, root=tmp_path, proc_text=V1_PROC).torch_threads == threads


def test_unthrottled_environments_keep_one_torch_thread(tmp_path: Path) -> None:
    fake_v1(tmp_path)
    off = Shaper(3008, 4, mode="off", root=tmp_path, proc_text=V1_PROC)
    assert off.torch_threads == 1
    assert Shaper(3008, 4, root=tmp_path / "none", proc_text=V1_PROC).torch_threads == 1


def test_v2_refusing_controllers_below_a_busy_cgroup_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """v2's no-internal-process rule: enabling controllers in the subtree_control of a
    cgroup that holds processes fails with EBUSY (the emulator's own cgroup always does)."""
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    own = tmp_path / "job"
    own.mkdir()
    (own / "cgroup.procs").touch()
    write = Path.write_text

    def busy(self: Path, data: str, *args: object, **kwargs: object) -> int:
        if self == own / "cgroup.subtree_control":
            raise OSError(errno.EBUSY, "Device or resource busy")
        return write(self, data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", busy)
    described = Shaper(512, 4, root=tmp_path, proc_text="0::/job\n").describe()
    assert described["enforced"] is False
    assert "holds processes" in (described["reason"] or "")
    assert not list(own.glob("deploybench-*"))


def test_process_cpu_time_is_read_to_well_under_a_tick() -> None:
    before = process_cpu_ms(os.getpid())
    end = time.thread_time() + 0.03
    while time.thread_time() < end:
        pass
    after = process_cpu_ms(os.getpid())
    assert before is not None
    assert after is not None
    # 30 ms of spin: /proc/PID/stat's 10 ms ticks would say 20, 30 or 40.
    assert 29.9 <= after - before <= 45.0
    assert process_cpu_ms(2**22 + 12345) is None  # no such process
