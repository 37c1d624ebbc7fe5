"""mCE, relative mCE and mean errors per family over ImageNet-C style corruption errors.

Definitions (Hendrycks & Dietterich, ICLR 2019, Section 3), with ``E_{s,c}`` a model's top-1 error
on corruption ``c`` at severity ``s`` and ``E_clean`` its clean error, ``R`` the reference network
(AlexNet for ImageNet, the paper's choice):

* corruption error ``CE_c = sum_s E_{s,c} / sum_s R_{s,c}``; the reference errors are kept as their
  mean over the 5 severities, so ``CE_c = mean_s E_{s,c} / mean_s R_{s,c}``;
* relative ``rCE_c = sum_s (E_{s,c} - E_clean) / sum_s (R_{s,c} - R_clean)``;
* ``mCE`` / relative ``mCE``: the mean of ``CE_c`` / ``rCE_c`` over the 15 benchmark corruptions,
  in percent (AlexNet = 100). Defined only with all 5 severities of all 15: a partial protocol
  (``corruptions-lite``) reports errors and family means, and says why mCE is missing. Relative
  mCE is also undefined when the reference's corrupted error does not exceed its clean error on
  some corruption (a zero or negative denominator), and CE (so mCE) is undefined on a corruption
  the reference never gets wrong (0 % error): the reason is in ``mce_missing``, which reports print.
* the mean error per family (noise, blur, weather, digital): the mean over the family's
  corruptions of ``mean_s E_{s,c}`` over the severities measured.

Everything is in percent, as stored in records.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from statistics import mean

from ..errors import SpecError

BENCHMARK = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
SEVERITIES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Reference:
    """The network whose errors normalize CE: mean error over severities per corruption, clean error."""

    name: str
    clean_top1_err: float
    corruption_top1_err: dict[str, float]
    source: str = ""


@functools.lru_cache(maxsize=1)
def alexnet() -> Reference:
    """AlexNet's published ImageNet-C errors (``dgbench/assets/imagenet_c_alexnet.toml``, with its source)."""
    try:  # Python >= 3.11
        import tomllib as toml
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as toml  # type: ignore[no-redef]

    from ..config import asset_path

    path = asset_path("imagenet_c_alexnet.toml")
    try:
        doc = toml.loads(path.read_text())
        ref = Reference(doc["name"], float(doc["clean_top1_err"]),
                        {k: float(v) for k, v in doc["corruption_top1_err"].items()}, doc["source"])
    except (KeyError, ValueError, toml.TOMLDecodeError) as exc:
        raise SpecError(f"{path}: malformed reference errors ({exc})") from None
    if set(ref.corruption_top1_err) != set(BENCHMARK):
        raise SpecError(f"{path}: corruption_top1_err must list exactly the 15 benchmark corruptions")
    return ref


@dataclass
class CorruptionSummary:
    """One model's corruption results and the figures derived from them (percent)."""

    errors: dict[str, dict[int, float]]  # corruption -> severity -> top-1 error
    groups: dict[str, str]  # corruption -> family (noise, blur, weather, digital)
    clean: float | None
    reference: str | None = None
    ce: dict[str, float] = field(default_factory=dict)  # normalized, percent
    rel_ce: dict[str, float] = field(default_factory=dict)
    mce: float | None = None
    rel_mce: float | None = None
    mce_missing: str | None = None  # why mCE is None
    mean_err: float | None = None  # over the benchmark corruptions measured, all severities measured
    family_err: dict[str, float] = field(default_factory=dict)
    severity_err: dict[int, float] = field(default_factory=dict)  # mean over corruptions, per severity


def _complete(sev: dict[int, float]) -> bool:
    return all(s in sev for s in SEVERITIES)


def _names(corruptions: list[str], first: int = 4) -> str:
    return ", ".join(corruptions[:first]) + (" ..." if len(corruptions) > first else "")


def summarize(errors: dict[str, dict[int, float]], groups: dict[str, str], clean: float | None,
              reference: Reference | None = None, benchmark: tuple[str, ...] = BENCHMARK) -> CorruptionSummary:
    """CE per corruption, mCE, relative mCE (with ``reference``), and the mean errors."""
    out = CorruptionSummary(errors=errors, groups=groups, clean=clean, reference=reference.name if reference else None)
    bench = [c for c in benchmark if c in errors]
    if bench:
        out.mean_err = mean(mean(errors[c].values()) for c in bench)
        for s in SEVERITIES:
            at = [errors[c][s] for c in bench if s in errors[c]]
            if at:
                out.severity_err[s] = mean(at)
    by_family: dict[str, list[float]] = {}
    for c, sev in errors.items():
        by_family.setdefault(groups.get(c, "other"), []).append(mean(sev.values()))
    out.family_err = {g: mean(v) for g, v in by_family.items()}
    if reference is None:
        out.mce_missing = "no reference errors to normalize by"
        return out
    unscaled = []  # corruptions the reference never gets wrong: CE has no scale there
    for c in benchmark:
        if c in errors and _complete(errors[c]) and c in reference.corruption_top1_err:
            e = mean(errors[c][s] for s in SEVERITIES)
            r = reference.corruption_top1_err[c]
            if r <= 0:
                unscaled.append(c)
                continue
            out.ce[c] = 100.0 * e / r
            if clean is not None and r > reference.clean_top1_err:  # otherwise rCE has no scale
                out.rel_ce[c] = 100.0 * (e - clean) / (r - reference.clean_top1_err)
    reasons = []
    if unscaled:
        # mCE is the mean over every benchmark corruption; a mean over the others would be another,
        # incomparable figure under the same name, so it is left undefined, as relative mCE is.
        reasons.append(f"CE and mCE undefined: {reference.name}'s error on {_names(unscaled)} is 0% (nothing to "
                       f"normalize by; choose a reference that errs on every corruption)")
    missing = [c for c in benchmark if c not in out.ce and c not in unscaled]
    if missing:
        reasons.append(f"mCE needs all 5 severities of all {len(benchmark)} corruptions; missing: {_names(missing)}")
    if reasons:
        out.mce_missing = "; ".join(reasons)
        return out
    out.mce = mean(out.ce.values())
    flat = [c for c in benchmark if c not in out.rel_ce]
    if clean is None:
        out.mce_missing = "relative mCE needs the clean error (the reference shift 'origin')"
    elif flat:
        out.mce_missing = (f"relative mCE undefined: {reference.name}'s error on {', '.join(flat[:3])} does not exceed "
                           "its clean error (nothing to normalize by)")
    else:
        out.rel_mce = mean(out.rel_ce[c] for c in benchmark)
    return out
