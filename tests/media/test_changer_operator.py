"""The operator changer: prompts, polling, reasons shown once per change, timeouts, Ctrl-C."""

from __future__ import annotations

import pytest

from tapearc.media.changer import Changer, ChangerError, DriveBayStatus
from tapearc.media.changers.operator import OperatorChanger


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def make(results, *, poll=2.0, timeout=None):
    clock = Clock()
    said: list[str] = []
    it = iter(results)
    calls = []

    def check():
        calls.append(clock.now)
        r = next(it)
        if isinstance(r, BaseException):
            raise r
        return r

    op = OperatorChanger(said.append, poll=poll, timeout=timeout, clock=clock, sleep=clock.sleep)
    return op, check, said, clock, calls


def test_is_a_changer_with_one_drive_and_no_slots():
    op = OperatorChanger(lambda s: None)
    assert isinstance(op, Changer)
    assert op.name == "operator"
    st = op.status()
    assert st.slots == () and st.drives == (DriveBayStatus(0, False),)
    with pytest.raises(ChangerError, match=r"^an operator changer has no slots$"):
        op.load(1, 0)
    with pytest.raises(ChangerError, match=r"^an operator changer has no slots$"):
        op.unload(0)
    op.close()
    op.close()


def test_the_right_medium_already_there_asks_nothing():
    op, check, said, clock, _calls = make([True])
    op.wait_for_medium("medium TAP002", check)
    assert said == [] and clock.sleeps == []


def test_prompt_then_poll_until_inserted():
    op, check, said, clock, calls = make([False, False, None, True], poll=2.0)
    op.wait_for_medium("medium TAP002 (sequence 2 of media set 1234)", check)
    assert said == ["Please put medium TAP002 (sequence 2 of media set 1234) into the drive; press Ctrl-C to give up."]
    assert clock.sleeps == [2.0, 2.0, 2.0]
    assert len(calls) == 4


def test_reasons_are_shown_once_per_change():
    wrong1 = "the drive holds sequence 1 of set X; waiting for sequence 2"
    wrong3 = "the drive holds sequence 3 of set X; waiting for sequence 2"
    op, check, said, _clock, _calls = make([wrong1, wrong1, wrong1, False, wrong1, wrong3, wrong3, True])
    op.wait_for_medium("sequence 2 of set X", check, timeout=None)
    assert said[1:] == [wrong1, wrong1, wrong3]  # again after the drive was emptied
    assert said[0].startswith("Please put sequence 2 of set X into the drive")


def test_timeout():
    op, check, said, clock, _calls = make([False] * 100, poll=2.0)
    with pytest.raises(ChangerError) as info:
        op.wait_for_medium("medium TAP009", check, timeout=5)
    assert str(info.value) == "timed out after 5 s waiting for medium TAP009"
    assert "(waiting up to 5 s)" in said[0]
    assert clock.sleeps == [2.0, 2.0, 1.0]  # the last wait is cut to the deadline
    assert clock.now == 1005.0


def test_the_changer_timeout_is_the_default():
    op, check, _, _, _ = make([False] * 100, poll=1.0, timeout=3)
    with pytest.raises(ChangerError, match="timed out after 3 s"):
        op.wait_for_medium("x", check)
    op, check, _said, _clock, _calls = make([False] * 5 + [True], poll=1.0, timeout=3)
    op.wait_for_medium("x", check, timeout=None)  # None: no limit, overrides the default


def test_ctrl_c_and_check_errors_propagate():
    op, check, _, _, _ = make([False, KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        op.wait_for_medium("x", check)

    def sleep(_):
        raise KeyboardInterrupt

    op = OperatorChanger(lambda s: None, sleep=sleep)
    with pytest.raises(KeyboardInterrupt):
        op.wait_for_medium("x", lambda: False)
    op, check, _said, _clock, _calls = make([False, OSError(5, "I/O error")])
    with pytest.raises(OSError):
        op.wait_for_medium("x", check)


def test_real_clock_short_poll(capsys):
    n = iter([False, "not that one", True])
    OperatorChanger(poll=0.01).wait_for_medium("medium TAP001", lambda: next(n), timeout=5)
    err = capsys.readouterr().err
    assert "Please put medium TAP001 into the drive (waiting up to 5 s)" in err
    assert "not that one" in err
