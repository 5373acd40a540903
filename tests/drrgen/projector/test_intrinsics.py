"""The 32-bit index helpers of the projector's gather loops."""

import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from drrgen.projector.intrinsics import fast_gathers, index32, load_at, load_pair


@njit
def _index(ib, ia, w_b, shift_a, base):
    return index32(np.int32(ib), np.int32(ia), np.int32(w_b), np.int32(shift_a), np.int32(base))


@njit
def _load(arr, p, delta):
    return load_at(arr, np.int32(p), np.int32(delta))


def test_index32_known_answers():
    assert _index(3, 5, 100, 5, 7) == 3 * 100 + 5 * 32 + 7
    assert _index(0, 0, 1, 0, 0) == 0
    assert _index(65535, 1, 32768, 4, 9) == 65535 * 32768 + 16 + 9  # near the int32 limit


def test_load_at_reads_the_element():
    arr = np.arange(50, dtype=np.float32) * 0.5
    assert _load(arr, 10, 3) == arr[13]
    assert _load(arr, 49, 0) == arr[49]


@njit
def _pair(arr, p, delta, w_a):
    return load_pair(arr, np.int32(p), np.int32(delta), np.int32(w_a))


def test_load_at_widens_uint16_counts_exactly():
    counts = np.array([0, 1, 65535, 40000, 7, 0], np.uint16)  # the last: a slack entry
    assert [_load(counts, i, 0) for i in range(5)] == [0.0, 1.0, 65535.0, 40000.0, 7.0]


def test_load_pair_reads_a_value_and_its_neighbour_from_every_layout():
    values = np.arange(40, dtype=np.float32) * 0.25
    assert _pair(values, 10, 3, 5) == (values[13], values[18])
    counts = np.arange(40, dtype=np.uint16) * 1000
    assert _pair(counts, 4, 1, 8) == (5000.0, 13000.0)
    # uint32 words: low half the voxel's count, high half its neighbour's (both up to 65535).
    words = np.array([0, 65535 | (40000 << 16), 3 | (65535 << 16)], np.uint32)
    assert _pair(words, 1, 0, 99) == (65535.0, 40000.0)  # w_a is in the word already
    assert _pair(words, 0, 2, 99) == (3.0, 65535.0)
    with pytest.raises(TypingError):
        njit(lambda a: load_pair(a, np.int32(0), np.int32(0), np.int32(1)))(np.zeros(4))


def test_load_at_is_bounds_checked_under_numba_boundscheck():
    # The projector fuzz relies on NUMBA_BOUNDSCHECK=1 reaching these loads too.
    code = (
        "import numpy as np\n"
        "from numba import njit\n"
        "from drrgen.projector.intrinsics import load_at\n"
        "f = njit(lambda a, p: load_at(a, np.int32(p), np.int32(0)))\n"
        "a = np.zeros(8, np.float32)\n"
        "assert f(a, 7) == 0\n"
        "try:\n"
        "    f(a, 8)\n"
        "except IndexError:\n"
        "    print('raised')\n"
    )
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1"}  # compiled fresh: nothing cached
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "raised"


def test_int64_or_float_arguments_are_a_typing_error():
    with pytest.raises(TypingError):
        njit(lambda: index32(np.int64(1), np.int32(1), np.int32(1), np.int32(1), np.int32(1)))()
    with pytest.raises(TypingError):
        njit(lambda a: load_at(a, 2.5, np.int32(0)))(np.zeros(4, np.float32))


@pytest.mark.parametrize(
    ("vendor", "gds", "fast"),
    [
        ("GenuineIntel", "Not affected", True),
        ("GenuineIntel", "Vulnerable", True),
        ("GenuineIntel", None, False),  # a kernel that predates the report: unknown
        ("GenuineIntel", "Unknown: Dependent on hypervisor status", False),
        ("GenuineIntel", "Mitigation: Microcode", False),
        ("AuthenticAMD", "Not affected", False),
        (None, None, False),  # no /proc/cpuinfo
    ],
)
def test_fast_gathers_by_vendor_and_downfall_mitigation(tmp_path, vendor, gds, fast):
    cpuinfo, status = tmp_path / "cpuinfo", tmp_path / "gds"
    if vendor:
        cpuinfo.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t: fpu avx2\n")
    if gds:
        status.write_text(gds + "\n")
    assert fast_gathers(str(cpuinfo), str(status)) is fast
