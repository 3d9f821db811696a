"""Admission: which Variants of a Bakeoff enter it (at most spec.judge.candidates), and why the others do not.

Pure: a :class:`Pass` in (each Variant parsed once, against the Bakeoff's spec parsed once), the record and
the Variants' Accepted conditions out.
"""

from __future__ import annotations

from typing import Any

from bakeoff.controller.kube.context import Pass
from bakeoff.controller.kube.status import cluster_message, set_condition
from bakeoff.controller.reconcile import ACTIVE, FINAL, GATED, PENDING, ROLLED_BACK, RUNNING
from bakeoff.controller.resources import ResourceError, parse_variant


def holds_slot(rec: dict[str, Any]) -> bool:
    """Whether a recorded candidate counts against spec.judge.candidates.

    The judge splits alpha over k candidates for the whole bake-off (Bonferroni), so a candidate
    that took traffic has spent its share whatever became of it. One that never got traffic
    (gated, or failed before admission: step -1) never reached the judge, whose k stays fixed:
    its place may go to a new Variant without raising the family-wise error.
    """
    return not (rec.get("phase") in (ROLLED_BACK, GATED) and int(rec.get("step", -1)) < 0)


def earlier_round(v: dict[str, Any], bakeoff_uid: str) -> str | None:
    """Why Variant ``v`` is a finished entrant of an earlier Bakeoff of the same name, or None.

    A Variant is tied to the Bakeoff (by uid) it entered, recorded as ``status.bakeoffUID``. One that
    reached an end there (rolled back, lost, promoted, gated) is never admitted again: a Bakeoff
    created again under the same name is a new round, and a rolled-back build must not serve live
    traffic again because its name matches. (A Variant from before bakeoffUID was recorded: its
    end phase alone says it.) ``{bakeoff}`` in the text is for the caller to fill in.
    """
    st = v.get("status") or {}
    phase, uid = st.get("phase"), st.get("bakeoffUID")
    if not phase or phase in ACTIVE or uid == bakeoff_uid:
        return None
    reason = f": {st['reason']}" if st.get("reason") else ""
    return (
        f"Variant {v['metadata']['name']} ended in an earlier round of bake-off {{bakeoff}} ({phase}{reason}); "
        f"a Variant of an earlier round is never admitted again: submit the build as a new Variant"
    )


def admit_variants(p: Pass) -> None:
    """Valid Variants enter (up to k), others get a condition saying why not."""
    b, bname, now = p.obj, p.name, p.now
    phase = p.status.get("phase") or RUNNING
    k = p.status.get("candidates")
    for v in sorted(
        p.view.variants, key=lambda v: (v["metadata"].get("creationTimestamp") or "", v["metadata"]["name"])
    ):
        vname = v["metadata"]["name"]
        vgen = v["metadata"].get("generation")
        vconds = list((v.get("status") or {}).get("conditions") or [])
        try:
            parsed = parse_variant(v, p.bres, "cluster", platform="kubernetes")
        except ResourceError as e:
            p.variant_conds[vname] = set_condition(
                vconds, "Accepted", False, "InvalidSpec", cluster_message(str(e), p.ns), vgen, now
            )
            continue
        if vname not in p.record:
            if v["metadata"].get("deletionTimestamp"):
                continue
            earlier = earlier_round(v, b["metadata"]["uid"])
            if earlier is not None:
                p.variant_conds[vname] = set_condition(
                    vconds, "Accepted", False, "EarlierRound", earlier.format(bakeoff=bname), vgen, now
                )
                continue
            if phase in FINAL or phase != RUNNING:
                why = f"bake-off {bname} is over ({phase}); create a new Bakeoff for another round"
                p.variant_conds[vname] = set_condition(vconds, "Accepted", False, "BakeoffFinished", why, vgen, now)
                continue
            limit = k or p.bres.judge.candidates
            holders = [f"{n} ({r.get('phase')})" for n, r in sorted(p.record.items()) if holds_slot(r)]
            if limit and len(holders) >= limit:
                why = (
                    f"bake-off {bname} judges at most {limit} candidate{'s' if limit != 1 else ''} "
                    f"(spec.judge.candidates, fixed when judging started: alpha is split over them) and "
                    f"every slot is taken, by {', '.join(holders)}; a candidate keeps its slot once it "
                    f"has been admitted, even when rolled back, since the judge already spent its share of "
                    f"alpha on it; only one that never got traffic (gated, or failed before admission) "
                    f"frees its slot. To enter more, start another Bakeoff with a larger spec.judge.candidates"
                )
                p.variant_conds[vname] = set_condition(vconds, "Accepted", False, "TooManyCandidates", why, vgen, now)
                continue
            p.record[vname] = {"phase": PENDING, "step": -1, "uid": v["metadata"]["uid"]}
            p.events.append({"type": "entered", "variant": vname, "reason": f"entered bake-off {bname}"})
        p.valid[vname] = v
        p.parsed[vname] = parsed
        p.variant_conds[vname] = set_condition(vconds, "Accepted", True, "Entered", f"candidate in {bname}", vgen, now)
    if p.record and not k:
        k = max(len(p.record), p.bres.judge.candidates or 0)
    p.status["candidates"] = k
