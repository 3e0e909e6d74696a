"""The Drive server's own promise to the tests that use it: leaving it fails when an injected
fault did not fire or the client broke the protocol, so a fault test that stopped testing
anything (an operation renamed, a ``skip`` past the last request) cannot pass."""

from __future__ import annotations

import pytest

from scripts.fakedrive import DriveServer


def test_a_fault_that_never_fired_fails_the_exit() -> None:
    unfired = "fault drop on chunk .* fired 0 time"
    with pytest.raises(AssertionError, match=unfired), DriveServer() as server:
        server.state.inject("chunk", "drop", skip=2)


def test_a_fault_that_fired_less_often_than_told_fails_the_exit() -> None:
    with pytest.raises(AssertionError, match="2 time.* fired 1 time"), DriveServer() as server:
        fault = server.state.inject("list", "error", times=2)
        fault.used = 1                  # as if one of two list requests had come


def test_an_optional_fault_may_stay_unfired() -> None:
    with DriveServer() as server:
        server.state.inject("chunk", "delay", delay=1.0, optional=True)


def test_a_stopped_fault_is_still_checked() -> None:
    with pytest.raises(AssertionError, match="every matching request"), DriveServer() as server:
        server.state.inject("chunk", "drop", times=None)
        server.state.stop_faults()


def test_an_unknown_operation_is_refused_at_once() -> None:
    server = DriveServer()
    with pytest.raises(ValueError, match="unknown operation 'chunks'"):
        server.state.inject("chunks", "drop")
    with pytest.raises(ValueError, match="unknown action"):
        server.state.inject("chunk", "explode")


def test_a_protocol_violation_fails_the_exit_unless_the_test_took_it() -> None:
    with pytest.raises(AssertionError, match="protocol violation: gap"), DriveServer() as server:
        server.state.violations.append("gap: chunk at 524288, server has 262144")
    with DriveServer() as server:
        server.state.violations.append("gap: chunk at 524288, server has 262144")
        assert len(server.state.take_violations()) == 1


def test_a_failing_test_keeps_its_own_error() -> None:
    with pytest.raises(KeyError), DriveServer() as server:
        server.state.inject("chunk", "drop")
        raise KeyError("the test's own failure")
