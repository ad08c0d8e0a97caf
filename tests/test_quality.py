"""The G.107 E-model against anchors from the Recommendation and against a second,
straight-line computation written here from the formulas of G.107 (06/2015) clause 7; the
wideband G.107.1 model against the same computation on the 129 scale."""

from __future__ import annotations

import itertools
import math

import pytest

from callmeter.media import quality
from callmeter.media.quality import (
    CODECS,
    G711_PLC,
    G722,
    OPUS,
    PCMA,
    PCMU,
    WIDEBAND_CODECS,
    burst_ratio,
    burst_ratio_from_runs,
    codec_impairment,
    ie_eff,
    mos_from_r,
    mos_from_r_wideband,
    r_budget,
    r_budget_wideband,
    r_factor,
    r_factor_wideband,
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


# G.107.1 wideband: Ro,WB 129, Is,WB 0, Idle on 129, Idd x 1.29, Ie,eff with 95.


def reference_r_wb(
    ta: float, ie: float = 0.0, bpl: float = 4.3, ppl: float = 0.0, br: float = 1.0
) -> float:
    """The wideband rating in one breath: G.107's echo and delay terms rewritten here, with
    Ro 129 in the listener echo and the absolute delay stretched by 1.29."""
    t, tr = ta, 2 * ta
    no = -61.17921438624169  # G.107 7.2 No at the Table 3 defaults (reference_r computes it)
    roe, telr, wepl = -1.5 * (no - 2), 65, 110
    terv = telr - 40 * math.log10((1 + t / 10) / (1 + t / 150)) + 6 * math.exp(-0.3 * t * t)
    re = 80 + 2.5 * (terv - 14)
    idte = ((roe - re) / 2 + math.sqrt((roe - re) ** 2 / 4 + 100) - 1) * (1 - math.exp(-t))
    rle = 10.5 * (wepl + 7) * (tr + 1) ** -0.25
    idle = (129 - rle) / 2 + math.sqrt((129 - rle) ** 2 / 4 + 169)
    x = math.log2(ta / 100) if ta > 100 else 0.0
    idd = 25 * ((1 + x**6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2) if ta > 100 else 0
    return float(129 - (idte + idle + 1.29 * idd) - (ie + (95 - ie) * ppl / (ppl / br + bpl)))


def test_reference_no_matches_the_narrowband_model() -> None:
    assert quality._no_dbm0p() == pytest.approx(-61.17921438624169, abs=1e-12)


def test_wideband_defaults_give_r_128_85_and_mos_4_50() -> None:
    budget = r_budget_wideband()
    assert (budget.ro, budget.simultaneous_is, budget.scale_max) == (129.0, 0.0, 129.0)
    # Only the listener echo of Tr = 0 on the 129 scale: Rle = 1228.5, Idle = 0.153685.
    assert budget.delay_id == pytest.approx(0.153685, abs=1e-6)
    assert budget.r == pytest.approx(128.846315, abs=1e-6)
    assert budget.mos == pytest.approx(4.499152, abs=1e-6)
    assert r_factor_wideband() == budget.r == pytest.approx(reference_r_wb(0.0), abs=1e-9)
    assert r_budget().scale_max == 100.0


def test_g722_without_loss_loses_its_ie_wb_of_13() -> None:
    r = r_factor_wideband(ie=G722.ie, bpl=G722.bpl)
    assert r == pytest.approx(128.846315 - 13.0, abs=1e-6)
    assert mos_from_r_wideband(r) == pytest.approx(mos_from_r(115.846315 / 1.29), abs=1e-6)
    assert mos_from_r_wideband(r) == pytest.approx(4.334152, abs=1e-6)


@pytest.mark.parametrize(
    ("ppl", "expected_loss_ie"), [(1.0, 82 / 10.5), (2.0, 164 / 11.5), (5.0, 410 / 14.5)]
)
def test_g722_loss_on_the_wideband_scale(ppl: float, expected_loss_ie: float) -> None:
    # G.107.1 7.5: Ie,eff,WB = 13 + (95 - 13) Ppl / (Ppl + 9.5), the constant 95 as in G.107.
    budget = r_budget_wideband(ie=G722.ie, bpl=G722.bpl, ppl=ppl)
    assert budget.loss_ie == pytest.approx(expected_loss_ie)
    assert budget.r == pytest.approx(128.846315 - 13.0 - expected_loss_ie, abs=1e-6)
    assert budget.r == pytest.approx(reference_r_wb(0.0, 13.0, 9.5, ppl), abs=1e-9)
    assert budget.mos == mos_from_r_wideband(budget.r)


def test_g722_at_2_percent_loss_exactly() -> None:
    assert r_factor_wideband(ie=13.0, bpl=9.5, ppl=2.0) == pytest.approx(101.585446, abs=1e-6)


@pytest.mark.parametrize("ta_ms", [50.0, 150.0, 200.0, 300.0, 500.0])
def test_wideband_delay_terms(ta_ms: float) -> None:
    budget = r_budget_wideband(ta_ms=ta_ms)
    assert budget.r == pytest.approx(reference_r_wb(ta_ms), abs=1e-9)
    expected_id = (
        quality._idte(ta_ms) + quality._idle(2 * ta_ms, 129.0) + 1.29 * quality._idd(ta_ms)
    )
    assert budget.delay_id == pytest.approx(expected_id)


def test_wideband_idd_is_the_narrowband_curve_times_1_29() -> None:
    # X = 1 at Ta 200 ms: Idd = 25 (2^(1/6) - 3 (1 + 3^-6)^(1/6) + 2) = 3.044414.
    narrow = r_budget(ta_ms=200.0).delay_id - r_budget(ta_ms=100.0).delay_id
    wide = r_budget_wideband(ta_ms=200.0).delay_id - r_budget_wideband(ta_ms=100.0).delay_id
    echo = quality._idte(200.0) - quality._idte(100.0)
    listener_nb = quality._idle(400.0, quality._ro()) - quality._idle(200.0, quality._ro())
    listener_wb = quality._idle(400.0, 129.0) - quality._idle(200.0, 129.0)
    assert narrow - echo - listener_nb == pytest.approx(3.044414, abs=1e-6)
    assert wide - echo - listener_wb == pytest.approx(1.29 * 3.044414, abs=1e-6)


def test_wideband_r_falls_with_delay_loss_and_burstiness() -> None:
    by_delay = [r_factor_wideband(ta_ms=float(ta)) for ta in range(0, 801, 10)]
    assert all(later < earlier for earlier, later in itertools.pairwise(by_delay))
    by_loss = [r_factor_wideband(ie=13.0, bpl=9.5, ppl=p / 2) for p in range(0, 41)]
    assert all(later < earlier for earlier, later in itertools.pairwise(by_loss))
    random_loss = r_factor_wideband(ie=13.0, bpl=9.5, ppl=3.0)
    assert r_factor_wideband(ie=13.0, bpl=9.5, ppl=3.0, burst_r=2.0) < random_loss


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"ta_ms": 250.0}, {"ie": 13.0, "bpl": 9.5, "ppl": 4.0, "burst_r": 1.7, "ta_ms": 180.0}],
)
def test_wideband_budget_parts_add_up(kwargs: dict[str, float]) -> None:
    b = r_budget_wideband(**kwargs)
    parts = b.simultaneous_is + b.delay_id + b.codec_ie + b.loss_ie
    assert b.ro - parts == pytest.approx(b.r, abs=1e-12)
    assert b.r == pytest.approx(r_factor_wideband(**kwargs))


def test_mos_from_r_wideband_annex_a() -> None:
    assert mos_from_r_wideband(-5.0) == mos_from_r_wideband(0.0) == 1.0
    assert mos_from_r_wideband(129.0) == pytest.approx(4.5)
    assert mos_from_r_wideband(150.0) == 4.5
    assert mos_from_r_wideband(64.5) == pytest.approx(2.575)  # Rx 50
    assert mos_from_r_wideband(116.1) == pytest.approx(4.339)  # Rx 90
    assert mos_from_r_wideband(93.2) < mos_from_r(93.2)  # the two scales are not one


def test_mos_from_r_wideband_is_monotonic_and_bounded() -> None:
    grid = [r / 10 for r in range(-200, 1601)]  # R -20 .. 160
    values = [mos_from_r_wideband(r) for r in grid]
    assert all(0.98 <= v <= 4.5 for v in values)  # Annex B's own dip under Rx 6.5 aside
    above_dip = [v for r, v in zip(grid, values, strict=True) if r >= 8.5]
    assert all(1.0 <= v <= 4.5 for v in above_dip)
    assert all(later >= earlier for earlier, later in itertools.pairwise(above_dip))
    assert values[-1] == 4.5


def test_codec_impairment_by_name_and_bandwidth() -> None:
    assert codec_impairment("PCMU") is PCMU and codec_impairment("pcma") is PCMA
    assert codec_impairment("G722") is G722 and codec_impairment("opus") is OPUS
    assert WIDEBAND_CODECS == {"G722": G722, "OPUS": OPUS}
    assert G722.wideband and OPUS.wideband and not PCMU.wideband
    assert (G722.ie, G722.bpl) == (13.0, 9.5)
    assert "G722" not in CODECS  # CODECS stays the narrowband table
    assert codec_impairment("G729") is None
    assert codec_impairment("opus", "minptime=10;useinbandfec=1") is OPUS
    assert codec_impairment("opus", "maxplaybackrate=16000") is OPUS
    assert codec_impairment("opus", "maxplaybackrate=8000; useinbandfec=1") is None
    assert codec_impairment("opus", "sprop-maxcapturerate=12000") is None
