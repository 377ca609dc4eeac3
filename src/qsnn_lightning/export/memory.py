"""RAM of the streaming runtime, planned at export time: the packed membrane state, and the spike
maps of one time step placed in one arena by liveness (a map's words are reused once no later
stage reads it), as CMSIS-NN and TFLite Micro plan their tensor arenas."""

from dataclasses import dataclass

from .integer_model import ConvLayer, IntegerModel, MapInfo

WORD_BITS = 32
WORD_BYTES = 4


def words_for(bits: int) -> int:
    """32-bit words that hold ``bits`` bits: ``ceil(bits / 32)``."""
    return -(-bits // WORD_BITS)


def map_words(info: MapInfo) -> int:
    """Words of one step of a map: ``[plane][y][x][ceil(C / 32)]``."""
    return info.planes * info.height * info.width * words_for(info.channels)


def state_words(lif, output: MapInfo) -> int:
    """Words of a layer's packed levels: ``[y][x][ceil(C * field_bits / 32)]``."""
    return output.height * output.width * words_for(output.channels * lif.field_bits)


def last_reader(model: IntegerModel) -> list[int]:
    """For each map, the last stage that reads it (the head counts as stage ``len(maps)``)."""
    maps = model.maps()
    last = list(range(len(maps)))
    for stage, layer in enumerate(model.layers, start=1):
        sources = [layer.source]
        if isinstance(layer, ConvLayer) and layer.residual is not None:
            sources.append(layer.residual.source)
        for source in sources:
            last[source] = max(last[source], stage)
    last[model.head.source] = len(maps)
    return last


@dataclass(frozen=True)
class MemoryPlan:
    """The runtime's RAM in 32-bit words: each map's offset in the spike arena and the arena's size; each spiking
    layer's offset in the packed membrane state (stem first) and the state's size."""

    map_offsets: list[int]  # arena word of each map
    arena_words: int
    state_offsets: list[int]  # state word of each spiking layer (stem first)
    state_words: int

    @property
    def membrane_state_bytes(self) -> int:
        """Bytes of the packed membrane state kept between steps."""
        return self.state_words * WORD_BYTES

    @property
    def arena_bytes(self) -> int:
        """Bytes of the arena holding one step's spike maps."""
        return self.arena_words * WORD_BYTES


def plan(model: IntegerModel) -> MemoryPlan:
    """Map i lives from stage i (which writes it) to its last reader; it takes the lowest offset
    free of every earlier map still alive at stage i (first fit)."""
    maps = model.maps()
    last = last_reader(model)
    offsets: list[int] = []
    for index, info in enumerate(maps):
        size = map_words(info)
        taken = sorted((offsets[j], offsets[j] + map_words(maps[j])) for j in range(index) if last[j] >= index)
        offset = 0
        for start, end in taken:
            if offset + size <= start:
                break
            offset = max(offset, end)
        offsets.append(offset)
    arena = max((offset + map_words(info) for offset, info in zip(offsets, maps)), default=0)
    state_offsets, total = [], 0
    for layer in model.spiking_layers():
        state_offsets.append(total)
        total += state_words(layer.lif, layer.output)
    return MemoryPlan(offsets, arena, state_offsets, total)
