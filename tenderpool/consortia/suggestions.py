"""Partner suggestions: firms that cover what the current members do not.

The skills a consortium needs are the CPV codes of the notice and of the lots it answers,
plus the skills it seeks. A member's skill *covers* a need when one code falls under the
other in the CPV tree (45000000 covers 45330000; 45331000 covers a need of 45330000). The
needs no member covers are the *missing* skills.

Candidates are the approved firms listed in the partner directory with their skills public,
not already in the consortium and that did not mark the notice « pas intéressé ». A greedy
set cover picks, one after the other, the firm that covers the most still-missing skills
(ties broken by the score): these are flagged « complète le groupement ». All candidates are
ranked by a score out of 100:

=============  ======  =====================================================================
part           points  rule
=============  ======  =====================================================================
fit            0–55    the share of missing skills covered; a skill as precise as the need
                       counts fully, a more general one (45000000 for 45330000) counts half
proximity      0–20    the notice's or a member's département 20, a neighbouring one 10
capacity       0–10    published headcount band: 10 or more 10, 1 to 9 6, none 3
references     0–10    public references in the missing skills, 5 each
local awards   0–5     won a contract in the missing skills in the chambers' territory (when
                       award data is available)
=============  ======  =====================================================================

Only what a firm chose to publish in the directory is used and shown.

Performance: the firms' skills are read in one query restricted to the CPV divisions of the
missing skills, scored on plain tuples, and only the best candidates are loaded in full.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session, selectinload

from tenderpool.consortia.models import Consortium
from tenderpool.consortia.services import LIVE_STATES
from tenderpool.firms.matching import neighbours_of
from tenderpool.firms.models import Firm, FirmCpv, FirmStatus
from tenderpool.firms.profile import HEADCOUNT_BANDS, headcount_band, latest_headcount
from tenderpool.notices.models import Award, Notice, NoticeCpv, NoticeDepartment, NoticeDismissal
from tenderpool.reference import cpv_label, departments

DETAIL_LIMIT = 60  # candidates loaded in full (references, headcount) after the cheap first pass


def trim(code: str) -> str:
    """The meaningful prefix of a CPV code: 45330000 -> 4533 (two digits at least)."""
    digits = code[:8].rstrip("0")
    return digits if len(digits) >= 2 else code[:2]


def covers(skill: str, need: str) -> float:
    """How well a skill covers a need: 1 when as precise or more, 0.5 when more general, else 0."""
    t_skill, t_need = trim(skill), trim(need)
    if t_skill.startswith(t_need):
        return 1.0
    if t_need.startswith(t_skill):
        return 0.5
    return 0.0


def consortium_needs(consortium: Consortium) -> list[str]:
    """The CPV codes the consortium must cover, most specific first, without duplicates."""
    notice = consortium.notice
    codes = list(notice.cpv)
    wanted = set(consortium.lot_numbers)
    for lot in notice.lots:
        if lot.number in wanted:
            codes.extend(lot.cpv or [])
    codes.extend(consortium.skills_cpv or [])
    unique = list(dict.fromkeys(c for c in codes if c and len(c) >= 8))
    # A general code whose more specific code is also needed adds nothing to cover.
    return [c for c in unique if not any(o != c and trim(o).startswith(trim(c)) for o in unique)]


def missing_skills(consortium: Consortium) -> tuple[list[str], dict[str, list[str]]]:
    """The needs no active member covers, and for each covered need, the members covering it."""
    needs = consortium_needs(consortium)
    covered: dict[str, list[str]] = {}
    for need in needs:
        names = [m.firm.name for m in consortium.active_members if any(covers(s, need) for s in m.firm.cpv)]
        if names:
            covered[need] = names
    return [n for n in needs if n not in covered], covered


@dataclass
class Suggestion:
    firm: Firm
    score: int
    covered: list[str]  # missing skills it covers
    in_cover: bool  # picked by the greedy cover
    reasons: list[str] = field(default_factory=list)

    @property
    def explanation(self) -> str:
        return " ".join(self.reasons)


def _related(needs: list[str]) -> ColumnElement[bool]:
    """SQL for the skills related to the needs: under one of them (a LIKE on its meaningful
    prefix, which the primary key index serves) or one of their ancestors (45000000, 45300000…)."""
    prefixes = {trim(need) for need in needs}
    ancestors = {p[:k].ljust(8, "0") for p in prefixes for k in range(2, len(p))}
    return or_(FirmCpv.cpv.in_(sorted(ancestors)), *(FirmCpv.cpv.like(p + "%") for p in sorted(prefixes)))


def _skill_text(code: str) -> str:
    label = cpv_label(code)
    return f"{label} ({code})" if label else code


def _award_wins(
    session: Session, divisions: set[str], territory: set[str], since: dt.date
) -> dict[str, list[str]]:
    """SIREN -> titles of contracts won in those CPV divisions in the territory (award notices)."""
    if not divisions:
        return {}
    rows = session.execute(
        select(Award.winner_siret, Notice.title, Notice.published_at)
        .join(Notice, Notice.id == Award.notice_id)
        .where(
            Award.winner_siret.is_not(None),
            Award.unsuccessful.is_(False),
            (Notice.published_at.is_(None)) | (Notice.published_at >= since),
            Notice.id.in_(select(NoticeCpv.notice_id).where(func.substr(NoticeCpv.cpv, 1, 2).in_(divisions))),
            Notice.id.in_(
                select(NoticeDepartment.notice_id).where(NoticeDepartment.department.in_(territory))
            ),
        )
        .limit(5000)
    ).all()
    wins: dict[str, list[str]] = defaultdict(list)
    for siret, title, published in rows:
        if not siret:
            continue
        label = f"« {title[:80]} »" + (f" ({published.year})" if published else "")
        if label not in wins[siret[:9]]:
            wins[siret[:9]].append(label)
    return wins


def suggest_partners(
    session: Session, consortium: Consortium, *, territory: set[str], today: dt.date, limit: int = 20
) -> tuple[list[str], list[Suggestion]]:
    """The missing skills and the ranked suggestions, each explained in French.

    ``territory`` is the set of départements of the chambers (for the local award data)."""
    missing, _covered = missing_skills(consortium)
    if not missing:
        return [], []
    notice = consortium.notice
    divisions = {code[:2] for code in missing}
    excluded = select(NoticeDismissal.firm_id).where(NoticeDismissal.notice_id == notice.id)
    members = {m.firm_id for m in consortium.members if m.state in LIVE_STATES}
    rows = session.execute(
        select(FirmCpv.firm_id, FirmCpv.cpv, Firm.department, Firm.directory_fields)
        .join(Firm, Firm.id == FirmCpv.firm_id)
        .where(
            Firm.status == FirmStatus.APPROVED.value,
            Firm.directory_opt_in.is_(True),
            _related(missing),
            FirmCpv.firm_id.not_in(excluded),
        )
    ).all()
    missing_trims = [(need, trim(need)) for need in missing]
    fit: dict[int, dict[str, float]] = defaultdict(dict)
    department: dict[int, str] = {}
    for firm_id, code, dep, fields in rows:
        if firm_id in members or "skills" not in (fields or ()):
            continue  # never use a skill the firm did not publish
        t_code = trim(code)
        for need, t_need in missing_trims:
            weight = 1.0 if t_code.startswith(t_need) else 0.5 if t_need.startswith(t_code) else 0.0
            if weight > fit[firm_id].get(need, 0.0):
                fit[firm_id][need] = weight
        department[firm_id] = dep
    fit = {k: v for k, v in fit.items() if v}
    if not fit:
        return missing, []
    near = set(notice.departments) | {m.firm.department for m in consortium.active_members}
    around = neighbours_of(near)

    def base(firm_id: int) -> float:
        weights = fit[firm_id]
        proximity = 20 if department[firm_id] in near else 10 if department[firm_id] in around else 0
        return 55 * sum(weights.values()) / len(missing) + proximity

    # Cheap first pass on plain values; only the best are loaded with their profile.
    shortlist = sorted(fit, key=lambda f: (-base(f), f))[:DETAIL_LIMIT]
    firms = {
        f.id: f
        for f in session.scalars(
            select(Firm)
            .where(Firm.id.in_(shortlist))
            .options(selectinload(Firm.years), selectinload(Firm.references), selectinload(Firm.cpv_links))
        )
    }
    wins = _award_wins(session, divisions, territory, today - dt.timedelta(days=3 * 365))
    names = departments()
    suggestions: list[Suggestion] = []
    for firm_id in shortlist:
        firm = firms[firm_id]
        weights = fit[firm_id]
        published = set(firm.directory_fields or ())
        covered = [need for need in missing if weights.get(need)]
        reasons = ["Couvre " + ", ".join(_skill_text(n) for n in covered) + "."]
        score = base(firm_id)
        if firm.department in near:
            reasons.append(f"Proche : {names.get(firm.department, firm.department)} ({firm.department}).")
        elif firm.department in around:
            reasons.append(
                f"Département voisin : {names.get(firm.department, firm.department)} ({firm.department})."
            )
        band = headcount_band(latest_headcount(firm)) if "headcount_band" in published else None
        if band is not None:
            low = HEADCOUNT_BANDS[band][1]
            score += 10 if low >= 10 else 6 if low >= 1 else 3
            reasons.append(f"Effectif : {HEADCOUNT_BANDS[band][0]}.")
        if "references" in published:
            relevant = [
                ref
                for ref in firm.references
                if ref.is_public and any(covers(c, n) for c in ref.cpv for n in missing)
            ]
            if relevant:
                score += min(10, 5 * len(relevant))
                best = max(relevant, key=lambda r: r.year)
                count = f"{len(relevant)} références proches" if len(relevant) > 1 else "Une référence proche"
                reasons.append(f"{count}, dont « {best.object[:80]} » ({best.buyer}, {best.year}).")
        won = wins.get(firm.siren)
        if won:
            score += 5
            reasons.append(f"A remporté un marché similaire sur le territoire : {won[0]}.")
        suggestions.append(
            Suggestion(
                firm=firm, score=min(100, round(score)), covered=covered, in_cover=False, reasons=reasons
            )
        )
    # Greedy set cover: the smallest group of firms that covers the missing skills.
    remaining = set(missing)
    pool = list(suggestions)
    while remaining and pool:
        pick = max(pool, key=lambda s: (len(remaining & set(s.covered)), s.score, -s.firm.id))
        if not remaining & set(pick.covered):
            break
        pick.in_cover = True
        remaining -= set(pick.covered)
        pool.remove(pick)
    for s in suggestions:
        if s.in_cover:
            s.reasons.insert(0, "Complète le groupement :")
    suggestions.sort(key=lambda s: (not s.in_cover, -s.score, s.firm.name))
    return missing, suggestions[:limit]
