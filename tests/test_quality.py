"""The G.107 E-model against anchors from the Recommendation and against a second,
straight-line computation written here from the formulas of G.107 (06/2015) clause 7."""

from __future__ import annotations

import itertools
import math

import pytest

from callmeter.media import quality
from callmeter.media.quality import (
    CODECS,
    G711_PLC,
    PCMA,
    PCMU,
    burst_ratio,
    burst_ratio_from_runs,
    ie_eff,
    mos_from_r,
    r_budget,
    r_factor,
)


def reference_r(
    ta: float, ie: float = 0.0, bpl: float = 4.3, ppl: float = 0.0, br: float = 1.0
) -> float:
    """G.107 clause 7 in one breath, defaults of Table 3 written in as numbers."""
    slr, rlr, stmr, lstr, ds, telr, wepl, qdu = 8, 2, 15, 18, 3, 65, 110, 1
    nc, nfor, ps, pr = -70, -64, 35, 35
    t, tr, olr = ta, 2 * ta, slr + rlr
    nos = ps - slr - ds - 100 + 0.004 * (ps - olr - ds - 14) ** 2
    pre = pr + 10 * math.log10(1 + 10 ** ((10 - lstr) / 10))
    nor = rlr - 121 + pre + 0.008 * (pre - 35) ** 2
    nfo = nfor + rlr
    no = 10 * math.log10(10 ** (nos / 10) + 10 ** (nor / 10) + 10 ** (nfo / 10) + 10 ** (nc / 10))
    ro = 15 - 1.5 * (slr + no)
    xolr = olr + 0.2 * (64 + no - rlr)
    iolr = 20 * ((1 + (xolr / 8) ** 8) ** (1 / 8) - xolr / 8)
    stmro = -10 * math.log10(10 ** (-stmr / 10) + math.exp(-t / 4) * 10 ** (-telr / 10))
    ist = (
        12 * (1 + ((stmro - 13) / 6) ** 8) ** (1 / 8)
        - 28 * (1 + ((stmro + 1) / 19.4) ** 35) ** (1 / 35)
        - 13 * (1 + ((stmro - 3) / 33) ** 13) ** (1 / 13)
        + 29
    )
    q = 37 - 15 * math.log10(qdu)
    g = 1.07 + 0.258 * q + 0.0602 * q * q
    iq = 15 * math.log10(1 + 10 ** ((ro - 100) / 15 + 46 / 8.4 - g / 9) + 10 ** (46 / 30 - g / 40))
    roe = -1.5 * (no - rlr)
    terv = telr - 40 * math.log10((1 + t / 10) / (1 + t / 150)) + 6 * math.exp(-0.3 * t * t)
    re = 80 + 2.5 * (terv - 14)
    idte = ((roe - re) / 2 + math.sqrt((roe - re) ** 2 / 4 + 100) - 1) * (1 - math.exp(-t))
    rle = 10.5 * (wepl + 7) * (tr + 1) ** -0.25
    idle = (ro - rle) / 2 + math.sqrt((ro - rle) ** 2 / 4 + 169)
    x = math.log2(ta / 100) if ta > 100 else 0.0
    idd = 25 * ((1 + x**6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2) if ta > 100 else 0
    ie_eff_ = ie + (95 - ie) * ppl / (ppl / br + bpl)
    return float(ro - (iolr + ist + iq) - (idte + idle + idd) - ie_eff_)


def test_all_defaults_give_r_93_2_and_mos_4_41() -> None:
    assert r_factor() == pytest.approx(93.2, abs=0.05)
    assert mos_from_r(r_factor()) == pytest.approx(4.41, abs=0.005)
    assert r_factor() == pytest.approx(reference_r(0.0), abs=1e-9)


def test_budget_parts_at_defaults() -> None:
    budget = r_budget()
    assert budget.ro == pytest.approx(94.77, abs=0.01)  # the classic Ro of the defaults
    assert budget.simultaneous_is == pytest.approx(1.41, abs=0.01)
    assert budget.delay_id == pytest.approx(0.15, abs=0.01)  # listener echo only at Ta 0
    assert budget.codec_ie == 0.0 and budget.loss_ie == 0.0


@pytest.mark.parametrize(
    ("ta_ms", "expected_r"), [(150.0, 89.539), (300.0, 72.666), (500.0, 54.803)]
)
def test_r_at_delays_matches_the_straight_line_computation(ta_ms: float, expected_r: float) -> None:
    assert r_factor(ta_ms=ta_ms) == pytest.approx(reference_r(ta_ms), abs=1e-9)
    assert r_factor(ta_ms=ta_ms) == pytest.approx(expected_r, abs=0.001)


def test_idd_is_zero_up_to_100_ms_and_grows_after() -> None:
    assert [quality._idd(ta) for ta in (0.0, 50.0, 100.0)] == [0.0, 0.0, 0.0]
    assert 0.0 < quality._idd(120.0) < quality._idd(200.0) < quality._idd(400.0)
    assert quality._idd(200.0) == pytest.approx(
        25 * (2 ** (1 / 6) - 3 * (1 + 3**-6) ** (1 / 6) + 2)
    )


def test_r_falls_monotonically_as_delay_grows() -> None:
    values = [r_factor(ta_ms=float(ta)) for ta in range(0, 801, 10)]
    assert all(later < earlier for earlier, later in itertools.pairwise(values))


@pytest.mark.parametrize(
    ("ppl", "expected_ie_eff"), [(1.0, 95 / 26.1), (2.0, 190 / 27.1), (5.0, 475 / 30.1)]
)
def test_ie_eff_for_g711_with_plc_at_random_loss(ppl: float, expected_ie_eff: float) -> None:
    assert ie_eff(ie=0.0, bpl=25.1, ppl=ppl) == pytest.approx(expected_ie_eff)
    budget = r_budget(ie=PCMU.ie, bpl=PCMU.bpl, ppl=ppl)
    assert budget.loss_ie == pytest.approx(expected_ie_eff)
    assert budget.r == pytest.approx(reference_r(0.0, 0.0, 25.1, ppl), abs=1e-9)
    assert budget.r == pytest.approx(r_factor() - expected_ie_eff)


def test_g711_values_from_g113_appendix_i() -> None:
    assert PCMU == PCMA == G711_PLC
    assert (G711_PLC.ie, G711_PLC.bpl) == (0.0, 25.1)
    assert CODECS["PCMU"] is PCMU and CODECS["PCMA"] is PCMA


def test_bursty_loss_lowers_r() -> None:
    random_loss = r_factor(bpl=25.1, ppl=3.0, burst_r=1.0)
    bursty = r_factor(bpl=25.1, ppl=3.0, burst_r=2.0)
    very_bursty = r_factor(bpl=25.1, ppl=3.0, burst_r=4.0)
    assert very_bursty < bursty < random_loss
    assert bursty == pytest.approx(reference_r(0.0, 0.0, 25.1, 3.0, 2.0), abs=1e-9)


def test_codec_ie_counts_in_full() -> None:
    assert r_factor(ie=11.0) == pytest.approx(r_factor() - 11.0)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"ta_ms": 250.0}, {"ie": 11.0, "bpl": 19.0, "ppl": 4.0, "burst_r": 1.7, "ta_ms": 180.0}],
)
def test_budget_parts_add_up_to_ro_minus_r(kwargs: dict[str, float]) -> None:
    b = r_budget(**kwargs)
    parts = b.simultaneous_is + b.delay_id + b.codec_ie + b.loss_ie
    assert b.ro - parts == pytest.approx(b.r, abs=1e-12)
    assert b.r == pytest.approx(r_factor(**kwargs))
    assert b.mos == mos_from_r(b.r)


def test_mos_from_r_annex_b() -> None:
    assert mos_from_r(-5.0) == 1.0
    assert mos_from_r(0.0) == 1.0
    assert mos_from_r(100.0) == pytest.approx(4.5)
    assert mos_from_r(120.0) == 4.5
    assert mos_from_r(50.0) == pytest.approx(1 + 0.035 * 50 + 50 * -10 * 50 * 7e-6)
    assert mos_from_r(80.0) == pytest.approx(4.024)
    assert mos_from_r(70.0) == pytest.approx(3.597)


def test_burst_ratio_of_random_looking_loss_is_one() -> None:
    # 4 isolated losses in 100 packets: mean burst 1, random expectation 1 / (1 - 0.04).
    pattern = [i % 25 == 7 for i in range(100)]
    assert burst_ratio(pattern) == pytest.approx(1.0 * (1 - 0.04))


def test_burst_ratio_of_one_burst() -> None:
    pattern = [False] * 45 + [True] * 10 + [False] * 45
    assert burst_ratio(pattern) == pytest.approx(10 * (1 - 0.1))
    assert burst_ratio_from_runs([45, 10, 45]) == burst_ratio(pattern)


def test_burst_ratio_without_loss_or_without_reception_is_one() -> None:
    assert burst_ratio([False] * 10) == 1.0
    assert burst_ratio([True] * 10) == 1.0
    assert burst_ratio([]) == 1.0


def test_burst_ratio_pattern_starting_with_loss() -> None:
    assert burst_ratio([True, True, False, False]) == pytest.approx(2 * 0.5)
    assert burst_ratio_from_runs([0, 2, 2]) == pytest.approx(1.0)
