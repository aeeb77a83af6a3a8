"""Hypothesis strategies for valid domain values (shared by the tests in this directory)."""

from __future__ import annotations

from hypothesis import strategies as st

from actionqueue.core.ids import TaskId
from actionqueue.core.task.constraints import Backoff, HoldPolicy, RetryOn, TaskConstraints
from actionqueue.core.task.metadata import TaskMetadata
from actionqueue.core.task.run_policy import MisfirePolicy, RunPolicy
from actionqueue.core.task.task_spec import TaskPayload, TaskSpec

misfires = st.one_of(
    st.builds(
        MisfirePolicy.catch_up,
        st.none() | st.integers(1, 2**32 - 1),
        st.none() | st.integers(0, 2**40),
    ),
    st.builds(MisfirePolicy.coalesce, st.none() | st.integers(0, 2**40)),
    st.builds(MisfirePolicy.skip, st.none() | st.integers(0, 2**40)),
)
cron_exprs = st.sampled_from(
    ["* * * * *", "*/5 * * * *", "0 9 * * mon-fri", "*/10 * * * * *", "0 0 1 * *", "@daily"]
)
zones = st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"])
policies: st.SearchStrategy[RunPolicy] = st.one_of(
    st.builds(lambda m: RunPolicy.once(misfire=m), misfires),
    st.builds(
        lambda c, i, m: RunPolicy.repeat(c, i, misfire=m),
        st.integers(1, 2**32 - 1),
        st.integers(1, 2**31),
        misfires,
    ),
    st.builds(
        lambda e, z, mx, w, m: RunPolicy.cron(e, z, mx, w, misfire=m),
        cron_exprs,
        zones,
        st.none() | st.integers(1, 2**32 - 1),
        st.integers(1, 2**32 - 1),
        misfires,
    ),
)


backoffs = st.one_of(
    st.just(Backoff.none()),
    st.builds(Backoff.fixed, st.integers(0, 2**62)),
    st.integers(1, 2**40).flatmap(
        lambda base: st.builds(
            Backoff.exponential,
            st.just(base),
            st.integers(base, 2**41),
            st.floats(0.0, 1.0, allow_nan=False),
        )
    ),
)


names = st.from_regex(r"\A[a-z_][a-z0-9_]{0,8}(\.[A-Za-z_][A-Za-z0-9_]{0,8}){0,3}\Z")
retry_ons = st.builds(RetryOn, st.booleans(), st.booleans(), st.lists(names, max_size=4))
constraints = st.builds(
    TaskConstraints,
    st.integers(1, 2**32 - 1),
    st.none() | st.integers(1, 2**62),
    st.none() | st.text(min_size=1).filter(str.strip),
    st.sampled_from(HoldPolicy),
    backoffs,
    retry_ons,
)


metadatas = st.builds(
    TaskMetadata,
    st.integers(-(2**31), 2**31 - 1),
    st.lists(st.text(min_size=1).filter(str.strip), max_size=4),
    st.none() | st.text(),
)
opt_names = st.none() | st.text(min_size=1, max_size=20).filter(str.strip)
specs = st.builds(
    TaskSpec,
    st.builds(TaskId.new),
    st.builds(TaskPayload, st.binary(max_size=64), opt_names),
    policies,
    constraints,
    metadatas,
    handler=opt_names,
    dedupe_key=opt_names,
)
