"""The alive-worker read the session cap uses (`WorkerHeartbeat.alive_recent`): the
handshakes of one moment share one read, and each is told when that read began."""

from django.utils import timezone

from realtime.cluster.workers import WorkerHeartbeat


class CountedReads(WorkerHeartbeat):
    """A heartbeat whose alive-worker read (SMEMBERS and MGET in Redis) is counted."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def alive_all(self) -> set[str]:
        self.reads += 1
        return {f"worker-{self.reads}"}


async def test_reads_within_max_age_share_one_and_its_start():
    beat = CountedReads()
    before = timezone.now()

    first = await beat.alive_recent(60)
    second = await beat.alive_recent(60)

    assert first == second == (frozenset({"worker-1"}), first[1])
    assert before <= first[1] <= timezone.now()
    assert beat.reads == 1


async def test_a_read_older_than_max_age_is_made_again():
    beat = CountedReads()
    first = await beat.alive_recent(0)

    again = await beat.alive_recent(0)

    assert (beat.reads, again[0]) == (2, frozenset({"worker-2"}))
    assert again[1] >= first[1]
