"""`qphi data fetch`: GSM-8k, MATH and the natural-language levels from their public homes,
pinned and verified, converted to the formats the loaders read; `qphi data check` for a folder.

| dataset | public home, pinned | what is written |
|---|---|---|
| GSM-8k | Hugging Face hub `openai/gsm8k` (config `main`, parquet) at commit e53f048 | `gsm8k/{train,test}.jsonl`: question, answer |
| MATH | Hugging Face hub `EleutherAI/hendrycks_math` (7 subject configs, parquet) at commit 21a5633 | `math/{train,test}.jsonl`: subject, level, type, problem, solution |
| NL levels | the PHi paper's repository, github.com/vincentherrmann/predicting-hidden-states, at commit 5cb53a7 | `natural_language_levels/*.json`, unchanged |

Every downloaded file is checked against a SHA-256 before it is used: the natural-language levels
against hashes written here (computed from the files at that commit, which equal the copies this
project was developed with); the hub's parquet files against the SHA-256 the hub declares for
them at the pinned commit (its git-LFS object id), since they could not be downloaded where this
code was written. The record counts of the published datasets are checked too. Each dataset
folder gets a `SOURCE.json` naming its source and the SHA-256 of every file downloaded and
written, which `qphi data check` verifies later.

MATH's mirror has no per-problem file names, so its problems have no `id` (the loader numbers
them: 'test/0', …); they come in subject order (sorted), each subject in the mirror's order.
A dataset folder is built beside its destination and renamed into place when complete and
verified, so a failed or killed fetch leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from qphi.errors import QPhiError
from qphi.io import make_temp_dir, read_json, sha256_file, write_bytes, write_json, write_text
from qphi.tasks.data_files import DATASETS, MANIFEST, default_data_dir

GSM8K_REPO, GSM8K_REVISION = "openai/gsm8k", "e53f048856ff4f594e959d75785d2c2d37b678ee"
MATH_REPO, MATH_REVISION = "EleutherAI/hendrycks_math", "21a5633873b6a120296cce3e2df9d5550074f4a3"
MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)
PHI_REPO, PHI_REVISION = "vincentherrmann/predicting-hidden-states", "5cb53a74c33428c5771d1af55d53ea5beb976629"
NL_LEVELS_SHA256: dict[str, str] = {
    "code_1": "5bace96ba9b6b9beeeb24912efb591b73f669541225a2f08011cd3a3e7fed93f",
    "code_2": "bdf55a950ab71ab722e040d80edaf3e97292645060eb5b0d242b48d30916f241",
    "code_3": "6fee0c8069cf6b7e57c84880cc0c0b5bbc9b864d67ecde8f28c5b775ba8c1186",
    "code_4": "c24c914d94ef004f5aee80d8d33bcd4d5973d41365f169dd3b9cdaad5facc99b",
    "code_5": "2b775fd604440d48d6b6b6c0639d5b48d36e20fa17b011aa0c438dd06596ff9d",
    "code_6": "206ababd7118e56124b5d9fe1f7aff98c1abfe080e6a1f529e234492601c6665",
    "code_7": "e0472bbbaaa7312b3262f5c02c0f1e1fc0f0ecf30321873a61efcd21897bdf79",
    "code_8": "f5b08f8d98aa2309556b1fb3ea7fc19115dbca206ab8a0e1a765b6cd46077fee",
    "code_9": "5b009793b124d1921542b03f5e3b19d11d2e6d0d35203277ff7ed708712c5b7e",
    "code_10": "cf89e84f3157befd3678f1ba46f8111ad86d527c70cd1967a8311b281aaa6634",
    "code_11": "5d7080988f378c325dbdddcbb22d94ece32ec0d5cda81ac3d971ce5310dcb74f",
    "code_12": "5363dd3c31219ef806aea82460d645c0aa48635b9806abba21481035ab92719d",
    "code_13": "2c8a39d51cab12f64b5a1b96f25611dd1154ac9938c819362342eceb205d2628",
    "code_14": "8e1519c49c9b329e6f65779be12474593a28bb31c25420dd32bd1c37f263ee6d",
    "code_15": "ae17cf0c66d8ddfb3e7a946c66e54bd1e223d531a49655776e2210756dadd1cc",
    "licenses_1": "ebc5c67d9fae9d35bd8f63bd61c02a33ba38773f962cacb9925804018a0d0a37",
    "licenses_2": "5a967737e6cca139e38ba50d48fd34f1467119ac32d9c740c9d64a352af6ee82",
    "licenses_3": "ca8965cecce9883ec728e230a7f8dfaf204fd725ec586818d53cedea67cdb16e",
    "literature_1": "cad352afc120e4eac1f80533b2325d99084dc2b9af7de927eb405fde6b3edc1e",
    "literature_2": "e00936e0cb95509e0629234d422434506f0186f9ffdf471c3a4b12c350a6d779",
    "literature_3": "882afda953c235594a575af4647446957e9cd0b0c2aceb4f14e9925a0cf59968",
    "literature_4": "eb319717b9a26ef62c0b181f6a6d308ac3b565215c963d82cd03ba435ccdc931",
    "literature_5": "cf9eb6098e1c2be41d7ace9bc31f1fea06fb8e1fa75077404c7b7ea553fcf333",
    "literature_6": "df572470e2b62f44fc4bfc7578caf2f7dda03915bdaeb42f4cf7ecb3f597bd2f",
    "literature_7": "1984aca4f76bde2ace5a049f05753c8ec9a6565736d1efaddd33cfa7661492ef",
    "literature_8": "c64976e05110ade4ca186d154e8a65df27792d1856de8aa3c944acd670e78491",
    "literature_9": "4813d2baac6f3765a95977d3a72e061b055558ffbc2453c59b2376f94429528f",
    "literature_10": "e7a73a7ac74d93f7019076cd567e625eb62869fbce2f4b384fe65ab5482725c7",
    "predictable_1": "66cd9ea8ce10b165140c7e833bb593d04556fbfb9a0dc00c66f03291789fb0e2",
    "predictable_2": "50770c3d82d17a754a609a0cb4875b1fe491e4d4201f90b9cf2df7800c401ba5",
    "predictable_3": "0a0752340ba9bc79089a53a434ec1aac2dd96fd744580cf94cffd19ea9eb7355",
    "predictable_4": "2ab0eb6768f89ba8584200e149a4b62d62bc92f2045939eec293b9abf76eadf3",
    "predictable_5": "8664a609f8904eccdde02b7ee2c278f8f8d96c0a6d3924fcf8fe2a1c105f97f9",
    "shuffled_1": "dfc463003ff8fd51d53723ce2cf55f623d5dbee9b2fb51eb345cac7a296f85fe",
    "shuffled_2": "85bbe43ac9584d05abc432fa93420c8efee7bea5057f434894cb2b733ad71ae1",
    "shuffled_3": "9952654d1b2c5295aa18d4a0fc6adcc6aff4e415a37cf9957fa31c8e47220ef1",
    "shuffled_4": "2afc7efd3b2f0001c488a8d619f30aed5ac6b3062421dcae0e7dceb80d03af19",
    "shuffled_5": "0ce95fb2efafd79c80d5881dfed7ec1eae21b49cd5244c80703f8da3e67248a2",
    "shuffled_6": "19759382ca636f53f37e3df02e20c803a5451a7224177b44fc3a6eb969b67a54",
    "shuffled_7": "5673adc4477154226f869cab2ba712eb2b3f7a5ec1fd9ef64ed034e69d8eb99a",
    "shuffled_8": "6f9cb7416cb529fd74251c86f6f5f879bee0dd3172cae4347e81d6978409b213",
    "shuffled_9": "a6b69448a51e464680d9a9e1ac42661624390b2c84a9de17374e89b268f47be9",
    "shuffled_10": "05f5907666c7754bb3988d9e6b3a10b6f511f17b07b9c6fb859ffdaf2395697e",
    "shuffled_11": "ba1c5bb6c400b012263af06a0d75d54111f1931f6bde884d9618b043fd38a114",
    "shuffled_12": "e9c803c241eb3086c73f8bda35f8cc752a27a04f1539142a8002df9e4b26e589",
    "shuffled_13": "fcd874a1a266fe3aa6c6dd86024ae9bb2233c99fba72ae38935d50712f21aaeb",
    "shuffled_14": "a745ffe7324f6fab9c43718b929ea2a58dba2bef3e0e6c3539851feff20e6866",
    "shuffled_15": "de015fa134edd509a5268c206ce0373b5159ebcbc644b710bd7f37bb16b875b5",
    "shuffled_16": "5630b6bf40473c3c721a9f99f0ab5de8e9e396de224c6515b7bb86f3a0311087",
    "shuffled_17": "fa7f595321627330e7622beb5a44479e4a3be5d3c42fa047d0efe01221f31ada",
    "shuffled_18": "0c8ee8f7799658978c5f4b38ea36cfff275db0baffdcbc2f9275dcb2db578755",
    "shuffled_19": "8a48a83aeee9d6efdb41af8bb56e082c4fdd2915022a854c2d89e48e8af6870e",
    "shuffled_20": "93e58787d0e834f2f0f814004b80c428198489fd2f6f2aac7a9090ebef5f35e9",
}
SPLITS = ("train", "test")
RECORDS = {"gsm8k": {"train": 7473, "test": 1319}, "math": {"train": 7500, "test": 5000}}


@dataclass(frozen=True)
class RemoteFile:
    """One file at a pinned commit: on the Hugging Face hub (a dataset repo) or on GitHub."""

    host: Literal["hf", "github"]
    repo: str
    revision: str
    path: str
    sha256: str | None = None  # pinned here; None: the hub declares it

    @property
    def url(self) -> str:
        if self.host == "hf":
            return f"https://huggingface.co/datasets/{self.repo}/blob/{self.revision}/{self.path}"
        return f"https://github.com/{self.repo}/blob/{self.revision}/{self.path}"


@dataclass
class Manifest:
    """SOURCE.json: where a dataset folder came from and the SHA-256 of what was downloaded and written."""

    dataset: str
    repo: str
    revision: str
    downloaded: dict[str, str]
    files: dict[str, str]
    records: dict[str, int] = field(default_factory=dict)


def download(remote: RemoteFile, into: Path) -> tuple[Path, str | None]:
    """Download `remote` → (a local copy, the SHA-256 its host declares for it, or None).

    Hub files go through `huggingface_hub` (its cache, HF_TOKEN and HF_HUB_OFFLINE apply); the
    hub declares a file's SHA-256 as its git-LFS object id. GitHub files are read from
    raw.githubusercontent.com into `into`.
    """
    try:
        if remote.host == "hf":
            from huggingface_hub import HfApi, hf_hub_download

            [info] = HfApi().get_paths_info(remote.repo, [remote.path], revision=remote.revision, repo_type="dataset")
            local = hf_hub_download(remote.repo, remote.path, repo_type="dataset", revision=remote.revision)
            return Path(local), info.lfs.sha256 if info.lfs else None
        url = f"https://raw.githubusercontent.com/{remote.repo}/{remote.revision}/{remote.path}"
        with urllib.request.urlopen(url, timeout=60) as response:
            return write_bytes(into / Path(remote.path).name, response.read()), None
    except Exception as e:  # every way a download fails (no network, offline mode, HTTP errors) ends the fetch
        raise QPhiError(
            f"cannot download {remote.url} ({type(e).__name__}: {' '.join(str(e).split())[:200]}): "
            "check the network connection (and that HF_HUB_OFFLINE is not set), then run the command again"
        ) from None


def _verified(remote: RemoteFile, into: Path) -> Path:
    """`remote` downloaded and checked against its SHA-256 (pinned here, else declared by its host)."""
    path, declared = download(remote, into)
    expected = remote.sha256 or declared
    if expected is None:
        raise QPhiError(f"{remote.url} has no SHA-256 to verify it against: it is not the pinned file; report this")
    actual = sha256_file(path)
    if actual != expected:
        raise QPhiError(
            f"{remote.url} does not have the pinned SHA-256 (expected {expected}, got {actual}): the download is "
            "damaged or the source changed; run the command again, and report it if it persists"
        )
    return path


def _parquet_rows(path: Path, columns: tuple[str, ...], where: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises its own error types for a damaged file
        raise QPhiError(f"{where} is not a readable parquet file ({e}): run the command again") from None
    absent = [c for c in columns if c not in table.column_names]
    if absent:
        raise QPhiError(f"{where} lacks the column(s) {', '.join(absent)}: it is not the pinned dataset; report this")
    return table.select(list(columns)).to_pylist()


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def _gsm8k(staging: Path) -> Manifest:
    files, downloaded, records = {}, {}, {}
    for split in SPLITS:
        remote = RemoteFile("hf", GSM8K_REPO, GSM8K_REVISION, f"main/{split}-00000-of-00001.parquet")
        path = _verified(remote, staging)
        downloaded[remote.path] = sha256_file(path)
        rows = _parquet_rows(path, ("question", "answer"), remote.url)
        write_text(staging / f"{split}.jsonl", _jsonl(rows))
        files[f"{split}.jsonl"], records[split] = sha256_file(staging / f"{split}.jsonl"), len(rows)
    return Manifest("gsm8k", GSM8K_REPO, GSM8K_REVISION, downloaded, files, records)


def _math(staging: Path) -> Manifest:
    files, downloaded, records = {}, {}, {}
    for split in SPLITS:
        rows = []
        for subject in MATH_SUBJECTS:
            remote = RemoteFile("hf", MATH_REPO, MATH_REVISION, f"{subject}/{split}-00000-of-00001.parquet")
            path = _verified(remote, staging)
            downloaded[remote.path] = sha256_file(path)
            columns = ("level", "type", "problem", "solution")
            rows += [{"subject": subject, **row} for row in _parquet_rows(path, columns, remote.url)]
        write_text(staging / f"{split}.jsonl", _jsonl(rows))
        files[f"{split}.jsonl"], records[split] = sha256_file(staging / f"{split}.jsonl"), len(rows)
    return Manifest("math", MATH_REPO, MATH_REVISION, downloaded, files, records)


def _nl_levels(staging: Path) -> Manifest:
    for name, digest in NL_LEVELS_SHA256.items():
        _verified(
            RemoteFile("github", PHI_REPO, PHI_REVISION, f"data/natural_language_levels/{name}.json", digest), staging
        )
    files = {f"{name}.json": digest for name, digest in NL_LEVELS_SHA256.items()}
    return Manifest("natural_language_levels", PHI_REPO, PHI_REVISION, dict(files), files, {"texts": len(files)})


BUILDERS = {"gsm8k": _gsm8k, "math": _math, "natural_language_levels": _nl_levels}
NAMES = {fetch: folder for folder, (fetch, _) in DATASETS.items()}  # `qphi data fetch` name → folder


@dataclass
class Report:
    """What `check` found in one dataset folder."""

    dataset: str
    path: Path
    ok: bool
    detail: str


def _load(folder: Path, dataset: str) -> dict[str, int]:
    """Record counts from the real loaders (a `QPhiError` if any record is unusable)."""
    from qphi.tasks.natural_language import load_nl_levels
    from qphi.tasks.reasoning import load_gsm8k, load_math

    if dataset == "natural_language_levels":
        return {"texts": len(load_nl_levels(folder))}
    loader = load_gsm8k if dataset == "gsm8k" else load_math
    return {split: len(loader(folder, split)) for split in SPLITS}


def check(folder: Path, dataset: str) -> Report:
    """Whether `folder` holds a usable copy of `dataset`: every record loads, and the files
    match the SHA-256 of its SOURCE.json (or, for the natural-language levels, the pinned ones)."""
    fetch = DATASETS[dataset][0]
    if not folder.is_dir():
        return Report(dataset, folder, False, f"missing: run `qphi data fetch {fetch} --to {folder.parent}`")
    try:
        counts = _load(folder, dataset)
    except QPhiError as e:
        return Report(dataset, folder, False, f"unusable: {e}")
    shown = ", ".join(f"{k} {v}" for k, v in counts.items())
    if not (folder / MANIFEST).is_file():
        if dataset == "natural_language_levels":
            pinned = {f"{n}.json": d for n, d in NL_LEVELS_SHA256.items()}
            same = not _differing(folder, pinned) and counts["texts"] == len(pinned)
            return Report(
                dataset, folder, True, f"{shown}; {'the' if same else 'not the'} paper's set ({MANIFEST} absent)"
            )
        return Report(dataset, folder, True, f"{shown}; not fetched by qphi ({MANIFEST} absent): source unverified")
    manifest = read_json(folder / MANIFEST, Manifest)
    source = f"{manifest.repo}@{manifest.revision[:7]}"
    changed = _differing(folder, manifest.files)
    if changed:
        return Report(
            dataset, folder, False,
            f"{', '.join(changed[:3])}{' …' if len(changed) > 3 else ''} changed since it was fetched from {source}: "
            f"move the folder away and run `qphi data fetch {fetch} --to {folder.parent}`",
        )  # fmt: skip
    return Report(dataset, folder, True, f"{shown}; {source}, SHA-256 verified")


def _differing(folder: Path, expected: dict[str, str]) -> list[str]:
    """The files of `expected` (name → SHA-256) that are absent from `folder` or differ."""
    return [
        name
        for name, digest in expected.items()
        if not (folder / name).is_file() or sha256_file(folder / name) != digest
    ]


def fetch(dataset: str, to: Path | None = None) -> Report:
    """Download, verify and convert `dataset` (a folder name of DATASETS) into `to`/<dataset>;
    an existing verified copy is kept, anything else already there is refused untouched."""
    root = Path(to).expanduser() if to is not None else default_data_dir()
    target = root / dataset
    if target.exists():
        found = check(target, dataset)
        if found.ok and (target / MANIFEST).is_file():
            return found
        raise QPhiError(
            f"'{target}' already exists and is not a copy fetched by qphi ({found.detail}): "
            "move it away, or pass --to another folder"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise QPhiError(f"cannot create '{root}' ({e.strerror}): pass --to a writable folder") from None
    staging = make_temp_dir(root, f".{dataset}.fetch-")
    try:
        manifest = BUILDERS[dataset](staging)
        expected = RECORDS.get(dataset)
        if expected is not None and manifest.records != expected:
            raise QPhiError(
                f"{manifest.repo}@{manifest.revision[:7]} gave {manifest.records} records, not the published "
                f"{expected}: the pinned source changed; report this"
            )
        write_json(staging / MANIFEST, manifest)
        found = check(staging, dataset)
        if not found.ok:
            raise QPhiError(f"the fetched {dataset} does not load ({found.detail}): report this")
        os.rename(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return check(target, dataset)
