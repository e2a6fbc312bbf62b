"""Generation profiles: anatomy resolution, each sequence's native grid, motion and prevalence.

=========  =======  ========  ===========================================================
profile    atlas    anatomy   native grids (voxel mm along i, j, k; orientation)
=========  =======  ========  ===========================================================
tiny       2 mm     3 mm      FLAIR 3.5x3.5x4.5 LPS, T1 4 iso PIR, T2 3.5x3.5x4.5 RAS,
                              SWI 3x3x3.5 LPS, DWI 4.5x4.5x5 LAS (unit tests, < 1 s)
demo       1 mm     1.25 mm   FLAIR 1.2x1.2x3 LPS, T1 1.5 iso PIR (sagittal 3-D), T2
                              1.2x1.2x4 RAS, SWI 1x1x2 LPS, DWI 2x2x4 LAS
clinical   1 mm     1 mm      FLAIR 0.9x0.9x4 LPS, T1 1 iso PIR, T2 0.9x0.9x5 RAS,
                              SWI 0.8x0.8x2 LPS, DWI 1.8x1.8x5 LAS
=========  =======  ========  ===========================================================

The reference sequence (the first, FLAIR) carries every label. The shipped model's working
spacing is 1.5 mm isotropic (see :data:`WORKING_SPACING_MM`).
"""

from __future__ import annotations

import dataclasses

from csvdnet.errors import CsvdnetInputError

__all__ = ["PROFILES", "Profile", "SequenceProtocol", "WORKING_SPACING_MM", "resolve_profile"]

WORKING_SPACING_MM = 1.5
"""Working spacing proposed for the shipped model (``demo`` cohorts are made for it).

1.5 mm keeps the smallest rated structures at two voxels or more: a 3 mm lacune (the lower
bound that separates it from an EPVS), a microbleed blooming to >= 3 mm on SWI, and the 1-3 mm
EPVS width at about one voxel (they stay visible as CSF-like partial-volume lines and dots).
At 2 mm the 3 mm lacune / EPVS boundary is 1.5 voxels and small microbleeds fade into one
voxel. The brain box is ~110 x 140 x 110 voxels (~1.7 M), 2.4x the cost of 2 mm, which a
64^3 patch (96 mm) trains comfortably.
"""


@dataclasses.dataclass(frozen=True)
class SequenceProtocol:
    """How one sequence is acquired: its native grid and its image quality.

    Attributes:
        name: Sequence name (a channel of :data:`csvdnet.DEFAULT_SEQUENCES`).
        spacing: Voxel size along the voxel axes i, j, k in mm (k is the slice axis of 2-D
            sequences).
        axcodes: World direction of increasing i, j, k (nibabel codes): ``"LPS"`` is how DICOM
            converters without reorientation store axial slices, ``"PIR"`` a sagittal 3-D T1.
        snr: Signal-to-noise ratio of white matter (WM signal / Rician noise sigma).
        bias_rms: Root-mean-square of the log of the smooth multiplicative bias field.
        in_plane_fov_mm: Square field of view across the two in-plane axes (i, j); ``None``
            covers the head box plus a margin (3-D sequences cropped to the head).
    """

    name: str
    spacing: tuple[float, float, float]
    axcodes: str
    snr: float
    bias_rms: float = 0.12
    in_plane_fov_mm: float | None = 230.0


@dataclasses.dataclass(frozen=True)
class Profile:
    """Everything that makes a synthetic cohort coarse or fine, clean or realistic.

    Attributes:
        name: Profile name.
        atlas_mm: MNI152 atlas resolution sampled (1 or 2).
        anatomy_mm: Isotropic spacing of the fine grid the anatomy and lesions are drawn on
            before partial-volume sampling onto each native grid.
        sequences: Acquisition protocols; the first is the reference (labels are drawn on it).
        motion_deg: Standard deviation of the rotation (per axis) of the head between the
            reference and each other sequence.
        motion_mm: Standard deviation of the translation (per axis) between sequences.
        pose_deg: Standard deviation of the head's rotation (per axis) in the scanner.
        scale_range: Head size varies by up to +-this fraction per axis.
        warp_mm: Root-mean-square of the smooth non-linear displacement (MNI mm).
        ventricle_enlargement: Largest ventricle enlargement (atrophy) factor - 1.
        rssi_prevalence: Probability that a subject has a recent small subcortical infarct.
    """

    name: str
    atlas_mm: int
    anatomy_mm: float
    sequences: tuple[SequenceProtocol, ...]
    motion_deg: float = 1.5
    motion_mm: float = 1.5
    pose_deg: float = 3.0
    scale_range: float = 0.08
    warp_mm: float = 2.5
    ventricle_enlargement: float = 0.6
    rssi_prevalence: float = 0.35

    @property
    def reference(self) -> str:
        """Name of the reference sequence."""
        return self.sequences[0].name


def _protocols(flair: tuple, t1: tuple, t2: tuple, swi: tuple,
               dwi: tuple) -> tuple[SequenceProtocol, ...]:
    """The five default sequences with shared orientations and SNRs, given their voxel sizes."""
    return (
        SequenceProtocol("flair", flair, "LPS", snr=22.0),
        SequenceProtocol("t1", t1, "PIR", snr=30.0, in_plane_fov_mm=None),
        SequenceProtocol("t2", t2, "RAS", snr=25.0),
        SequenceProtocol("swi", swi, "LPS", snr=18.0, bias_rms=0.15, in_plane_fov_mm=220.0),
        SequenceProtocol("dwi", dwi, "LAS", snr=12.0, bias_rms=0.15),
    )


PROFILES: dict[str, Profile] = {
    "tiny": Profile("tiny", atlas_mm=2, anatomy_mm=3.0, sequences=_protocols(
        (3.5, 3.5, 4.5), (4.0, 4.0, 4.0), (3.5, 3.5, 4.5), (3.0, 3.0, 3.5), (4.5, 4.5, 5.0))),
    "demo": Profile("demo", atlas_mm=1, anatomy_mm=1.25, sequences=_protocols(
        (1.2, 1.2, 3.0), (1.5, 1.5, 1.5), (1.2, 1.2, 4.0), (1.0, 1.0, 2.0), (2.0, 2.0, 4.0))),
    "clinical": Profile("clinical", atlas_mm=1, anatomy_mm=1.0, sequences=_protocols(
        (0.9, 0.9, 4.0), (1.0, 1.0, 1.0), (0.9, 0.9, 5.0), (0.8, 0.8, 2.0), (1.8, 1.8, 5.0))),
}
"""The named profiles."""


def resolve_profile(profile: str | Profile, spacing: float | None = None) -> Profile:
    """The profile to generate with, optionally with every sequence at one isotropic spacing.

    Args:
        profile: A name in :data:`PROFILES` or a :class:`Profile`.
        spacing: If given, every sequence's native grid becomes ``spacing`` mm isotropic (its
            orientation and field of view stay); the anatomy grid is refined to it if coarser.

    Returns:
        The profile.

    Raises:
        CsvdnetInputError: Unknown profile name or a non-positive spacing.
    """
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise CsvdnetInputError("profile", f"unknown synthetic profile {profile!r} "
                                               f"(known: {', '.join(PROFILES)})")
        profile = PROFILES[profile]
    if spacing is None:
        return profile
    if not spacing > 0:
        raise CsvdnetInputError("spacing", f"must be a positive number of mm, got {spacing!r}")
    iso = (float(spacing),) * 3
    return dataclasses.replace(
        profile, anatomy_mm=min(profile.anatomy_mm, float(spacing)),
        sequences=tuple(dataclasses.replace(s, spacing=iso) for s in profile.sequences))
