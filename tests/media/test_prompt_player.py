import asyncio

from voicebot.media.player import PromptPlayer

SILENCE = b"\xff" * 4


async def drain() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_idle_gives_silence() -> None:
    player = PromptPlayer(SILENCE)
    assert player.next_frame() == (SILENCE, False)
    assert not player.playing


async def test_play_frames_marker_and_finished_callback() -> None:
    player = PromptPlayer(SILENCE)
    done: list[str] = []
    player.play([b"aaaa", b"bbbb", b"cc"], lambda: done.append("x"))
    assert player.playing
    assert player.next_frame() == (b"aaaa", True)
    assert player.next_frame() == (b"bbbb", False)
    assert player.next_frame() == (b"cc\xff\xff", False)  # short last frame padded
    assert done == []  # never re-entrant
    assert not player.playing
    await drain()
    assert done == ["x"]
    assert player.next_frame() == (SILENCE, False)
    player.play([b"dddd"])
    assert player.next_frame() == (b"dddd", True)  # new talkspurt after silence


async def test_stop_drops_queue_without_callback() -> None:
    player = PromptPlayer(SILENCE)
    done: list[int] = []
    player.play([b"aaaa", b"bbbb"], lambda: done.append(1))
    player.next_frame()
    player.stop()
    assert player.next_frame() == (SILENCE, False)
    await drain()
    assert done == []


async def test_stop_cancels_already_scheduled_callback() -> None:
    player = PromptPlayer(SILENCE)
    done: list[int] = []
    player.play([b"aaaa"], lambda: done.append(1))
    player.next_frame()  # last frame handed out: callback scheduled
    player.play([b"bbbb"], lambda: done.append(2))  # replaced before it ran
    await drain()
    assert done == []
    player.next_frame()
    await drain()
    assert done == [2]


async def test_play_replaces_enqueue_appends() -> None:
    player = PromptPlayer(SILENCE)
    done: list[str] = []
    player.play([b"1111", b"1111"], lambda: done.append("first"))
    player.next_frame()
    player.play([b"2222"], lambda: done.append("second"))
    player.enqueue([b"3333"], lambda: done.append("third"))
    frames = [player.next_frame() for _ in range(3)]
    assert frames == [(b"2222", False), (b"3333", False), (SILENCE, False)]
    await drain()
    assert done == ["second", "third"]


async def test_empty_play_finishes_soon() -> None:
    player = PromptPlayer(SILENCE)
    done: list[int] = []
    player.play([], lambda: done.append(1))
    assert not player.playing
    await drain()
    assert done == [1]
