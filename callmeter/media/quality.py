"""Conversational quality by the ITU-T G.107 E-model, and MOS from the rating factor R.

Theory of operation
-------------------
The E-model (ITU-T G.107 (06/2015), clause 7) rates a mouth-to-ear connection on the scale
``R = Ro - Is - Id - Ie,eff + A``: ``Ro`` is the basic signal-to-noise ratio (7.2), ``Is``
the impairments that come with the voice signal (7.3), ``Id`` the delay impairments (7.4),
``Ie,eff`` the codec and packet-loss impairment (7.5) and ``A`` the advantage factor (7.6,
always 0 here). A load test measures only four inputs per call direction: the codec (``Ie``,
``Bpl``), the packet-loss rate ``Ppl``, its burstiness ``BurstR`` and the one-way delay
``Ta``. Every other input stays at its G.107 Table 3 default (SLR 8, RLR 2, STMR 15, LSTR 18,
Ds 3, Dr 3, TELR 65, WEPL 110, qdu 1, Nc -70, Nfor -64, Ps 35, Pr 35), with the talker-echo
delay ``T = Ta`` and the listener-echo round trip ``Tr = 2 * Ta``: a VoIP path without
analogue hybrids, whose echo is what the terminal's TELR lets through.

The terms are kept as separate small functions named after their G.107 symbols so a reader
can hold each one against the Recommendation; ``r_budget`` returns them side by side so a user
sees *why* the MOS dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "CODECS",
    "G711_PLC",
    "PCMA",
    "PCMU",
    "CodecImpairment",
    "RBudget",
    "burst_ratio",
    "burst_ratio_from_runs",
    "ie_eff",
    "mos_from_r",
    "r_budget",
    "r_factor",
]

# G.107 (06/2015) Table 3 default values, named as in the Recommendation.
SLR_DB = 8.0  # send loudness rating
RLR_DB = 2.0  # receive loudness rating
STMR_DB = 15.0  # sidetone masking rating
LSTR_DB = 18.0  # listener sidetone rating
DS_DB = 3.0  # D-value of the telephone, send side
DR_DB = 3.0  # D-value of the telephone, receive side (enters only through LSTR here)
TELR_DB = 65.0  # talker echo loudness rating
WEPL_DB = 110.0  # weighted echo path loss
QDU = 1.0  # quantizing distortion units
NC_DBM0P = -70.0  # circuit noise referred to the 0 dBr point
NFOR_DBMP = -64.0  # noise floor at the receive side
PS_DBA = 35.0  # room noise at the send side
PR_DBA = 35.0  # room noise at the receive side
OLR_DB = SLR_DB + RLR_DB  # overall loudness rating (7.2)

# Annex B: the R scale of the narrowband model and its MOS anchors.
R_MAX = 100.0
MOS_MIN = 1.0
MOS_MAX = 4.5


@dataclass(frozen=True, slots=True)
class CodecImpairment:
    """Equipment impairment ``Ie`` and packet-loss robustness ``Bpl`` (ITU-T G.113 App. I)."""

    ie: float
    bpl: float


# ITU-T G.113 (11/2007) Appendix I, Table I.3 (random loss): G.711 with the packet-loss
# concealment of G.711 Appendix I has Ie 0 and Bpl 25.1 (``r_factor`` defaults to the G.107
# Table 3 value Bpl 4.3). Wideband codecs (G.722, Opus) are rated on the G.107.1 scale (Ro 129),
# which this module does not implement, so they have no entry here rather than a guessed one.
G711_PLC = CodecImpairment(ie=0.0, bpl=25.1)
PCMU = G711_PLC
PCMA = G711_PLC
CODECS: dict[str, CodecImpairment] = {"PCMU": PCMU, "PCMA": PCMA}


def _lg(x: float) -> float:
    return math.log10(x)


def _root(x: float, n: float) -> float:
    """The ``n``-th root of ``x`` (G.107 writes these as ``(...)^(1/n)``)."""
    return math.pow(x, 1.0 / n)


def _power_sum_db(*levels_db: float) -> float:
    """Level of uncorrelated sources added in power: ``10 lg(sum 10^(L/10))``."""
    return 10.0 * _lg(sum(10.0 ** (level / 10.0) for level in levels_db))


def _pre_dba() -> float:
    """Effective room noise ``Pre`` from ``Pr`` raised by the listener sidetone (G.107 7.2)."""
    return PR_DBA + 10.0 * _lg(1.0 + 10.0 ** ((10.0 - LSTR_DB) / 10.0))


def _no_dbm0p() -> float:
    """Total noise ``No`` at the 0 dBr point: ``Nc``, ``Nos``, ``Nor`` and ``Nfo`` (G.107 7.2)."""
    nos = PS_DBA - SLR_DB - DS_DB - 100.0 + 0.004 * (PS_DBA - OLR_DB - DS_DB - 14.0) ** 2
    pre = _pre_dba()
    nor = RLR_DB - 121.0 + pre + 0.008 * (pre - 35.0) ** 2
    nfo = NFOR_DBMP + RLR_DB
    return _power_sum_db(nos, nor, nfo, NC_DBM0P)


def _ro() -> float:
    """Basic signal-to-noise ratio ``Ro = 15 - 1.5 (SLR + No)`` (G.107 7.2)."""
    return 15.0 - 1.5 * (SLR_DB + _no_dbm0p())


def _is(t_ms: float) -> float:
    """Simultaneous impairment ``Is = Iolr + Ist + Iq`` (G.107 7.3)."""
    no = _no_dbm0p()
    xolr = OLR_DB + 0.2 * (64.0 + no - RLR_DB)
    iolr = 20.0 * (_root(1.0 + (xolr / 8.0) ** 8, 8) - xolr / 8.0)
    stmro = -10.0 * _lg(
        10.0 ** (-STMR_DB / 10.0) + math.exp(-t_ms / 4.0) * 10.0 ** (-TELR_DB / 10.0)
    )
    ist = (
        12.0 * _root(1.0 + ((stmro - 13.0) / 6.0) ** 8, 8)
        - 28.0 * _root(1.0 + ((stmro + 1.0) / 19.4) ** 35, 35)
        - 13.0 * _root(1.0 + ((stmro - 3.0) / 33.0) ** 13, 13)
        + 29.0
    )
    q = 37.0 - 15.0 * _lg(QDU)
    g = 1.07 + 0.258 * q + 0.0602 * q**2
    y = (_ro() - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0
    z = 46.0 / 30.0 - g / 40.0
    iq = 15.0 * _lg(1.0 + math.pow(10.0, y) + math.pow(10.0, z))
    return iolr + ist + iq


def _idte(t_ms: float) -> float:
    """Talker-echo impairment ``Idte`` (G.107 7.4); STMR 15 >= 9, so TERV needs no sidetone term."""
    roe = -1.5 * (_no_dbm0p() - RLR_DB)
    terv = TELR_DB - 40.0 * _lg((1.0 + t_ms / 10.0) / (1.0 + t_ms / 150.0))
    terv += 6.0 * math.exp(-0.3 * t_ms**2)
    re = 80.0 + 2.5 * (terv - 14.0)
    half = (roe - re) / 2.0
    return (half + math.sqrt(half**2 + 100.0) - 1.0) * (1.0 - math.exp(-t_ms))


def _idle(tr_ms: float) -> float:
    """Listener-echo impairment ``Idle`` (G.107 7.4), ``Rle = 10.5 (WEPL + 7)(Tr + 1)^-0.25``."""
    rle = 10.5 * (WEPL_DB + 7.0) * math.pow(tr_ms + 1.0, -0.25)
    half = (_ro() - rle) / 2.0
    return half + math.sqrt(half**2 + 169.0)


def _idd(ta_ms: float) -> float:
    """Absolute-delay impairment ``Idd`` (G.107 7.4, mT 100 ms, sT 1): 0 up to 100 ms."""
    if ta_ms <= 100.0:
        return 0.0
    x = _lg(ta_ms / 100.0) / _lg(2.0)
    return 25.0 * (_root(1.0 + x**6, 6) - 3.0 * _root(1.0 + (x / 3.0) ** 6, 6) + 2.0)


def _id(ta_ms: float) -> float:
    """Delay impairment ``Id = Idte + Idle + Idd`` with ``T = Ta`` and ``Tr = 2 Ta``."""
    return _idte(ta_ms) + _idle(2.0 * ta_ms) + _idd(ta_ms)


def ie_eff(*, ie: float = 0.0, bpl: float = 4.3, ppl: float = 0.0, burst_r: float = 1.0) -> float:
    """Effective equipment impairment (G.107 7.5): ``Ie + (95 - Ie) Ppl / (Ppl/BurstR + Bpl)``.

    ``ppl`` is the packet-loss probability in percent; ``burst_r`` is 1 for random loss and
    greater than 1 for bursty loss.
    """
    return ie + (95.0 - ie) * ppl / (ppl / burst_r + bpl)


@dataclass(frozen=True, slots=True)
class RBudget:
    """Where the rating went: ``ro - simultaneous_is - delay_id - codec_ie - loss_ie == r``.

    ``codec_ie`` is the codec's own ``Ie``; ``loss_ie`` is what packet loss adds on top of it
    (``Ie,eff - Ie``); ``delay_id`` is ``Id`` (echo plus absolute delay); ``simultaneous_is``
    is ``Is``, the part no network can fix.
    """

    r: float
    mos: float
    ro: float
    simultaneous_is: float
    delay_id: float
    codec_ie: float
    loss_ie: float


def r_budget(
    *, ie: float = 0.0, bpl: float = 4.3, ppl: float = 0.0, burst_r: float = 1.0, ta_ms: float = 0.0
) -> RBudget:
    """The E-model (G.107 7.1) term by term; ``A`` is 0."""
    ro = _ro()
    simultaneous_is = _is(ta_ms)
    delay_id = _id(ta_ms)
    loss_ie = ie_eff(ie=ie, bpl=bpl, ppl=ppl, burst_r=burst_r) - ie
    r = ro - simultaneous_is - delay_id - ie - loss_ie
    return RBudget(r, mos_from_r(r), ro, simultaneous_is, delay_id, ie, loss_ie)


def r_factor(
    *, ie: float = 0.0, bpl: float = 4.3, ppl: float = 0.0, burst_r: float = 1.0, ta_ms: float = 0.0
) -> float:
    """Transmission rating factor ``R = Ro - Is - Id - Ie,eff + A`` (G.107 7.1, ``A = 0``).

    ``ppl`` in percent, ``ta_ms`` the mean one-way (mouth-to-ear) delay; all other inputs at
    their G.107 defaults. With every default R is about 93.2.
    """
    return r_budget(ie=ie, bpl=bpl, ppl=ppl, burst_r=burst_r, ta_ms=ta_ms).r


def mos_from_r(r: float) -> float:
    """Conversational MOS (MOS_CQE) from R, G.107 Annex B (B.4).

    1 below R 0, 4.5 above R 100, ``1 + 0.035 R + R (R - 60)(100 - R) 7e-6`` in between. The
    cubic dips to about 0.98 for R under 6.5; that is the Recommendation's curve, kept as is.
    """
    if r < 0.0:
        return MOS_MIN
    if r > R_MAX:
        return MOS_MAX
    return 1.0 + 0.035 * r + r * (r - 60.0) * (R_MAX - r) * 7e-6


def burst_ratio_from_runs(loss_runs: Sequence[int]) -> float:
    """Burst ratio from alternating run lengths ``[received, lost, received, lost, ...]``.

    ITU-T G.113 Appendix I / RFC 3611 section 4.7.2: the observed mean length of loss bursts
    divided by the mean burst length expected for random loss at the same loss rate ``p``,
    which is ``1 / (1 - p)``. Returns 1 when there is no loss or nothing was received (the
    ratio is undefined there, and 1 leaves ``Ie,eff`` at its random-loss value).
    """
    lost = sum(loss_runs[1::2])
    total = lost + sum(loss_runs[0::2])
    bursts = sum(1 for run in loss_runs[1::2] if run > 0)
    if lost == 0 or lost == total:
        return 1.0
    mean_burst = lost / bursts
    return mean_burst * (1.0 - lost / total)


def burst_ratio(loss_pattern: Iterable[bool]) -> float:
    """Burst ratio (see ``burst_ratio_from_runs``) of per-packet flags, ``True`` = lost."""
    runs = [0]
    for lost in loss_pattern:
        if (len(runs) % 2 == 0) != lost:  # odd-indexed runs are losses
            runs.append(0)
        runs[-1] += 1
    return burst_ratio_from_runs(runs)
