"""The MNI152 region atlas: tissue maps, region rules, and mapping it onto subject grids."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from csvdnet.atlas import (DEEP_REGIONS, LOBAR_REGIONS, PERIVENTRICULAR_MM, REGION_CODES,
                           REGION_NAMES, load_atlas, regions_in_subject, world_to_mni_from_mask)

R = REGION_CODES


@pytest.fixture(scope="module")
def atlas():
    return load_atlas(2)


def _mni_of_voxels(atlas, mask):
    voxels = np.argwhere(mask)
    return voxels @ atlas.affine[:3, :3].T + atlas.affine[:3, 3]


def _region_at(atlas, x, y, z):
    return REGION_NAMES[int(atlas.sample("regions", np.array([[x], [y], [z]], float), order=0)[0])]


def test_codes_cover_what_the_rules_need(atlas):
    assert sorted(REGION_CODES.values()) == list(range(10))
    assert {"ventricles", "periventricular", "basal_ganglia", "centrum_semiovale", "juxtacortical",
            "thalamus", "deep_wm", "infratentorial", "csf"} <= set(REGION_CODES)
    assert not set(LOBAR_REGIONS) & set(DEEP_REGIONS)
    assert R["infratentorial"] not in LOBAR_REGIONS + DEEP_REGIONS
    present = set(np.unique(atlas.regions).tolist())
    assert present == set(range(10))
    # Every brain voxel has a region, nothing outside the brain has one.
    assert np.all((atlas.regions > 0) == atlas.brain)


def test_tissue_maps_partition_the_brain(atlas):
    total = atlas.gm + atlas.wm + atlas.csf
    assert np.allclose(total, atlas.brain, atol=1e-5)
    for tissue in (atlas.gm, atlas.wm, atlas.csf):
        assert tissue.min() >= 0 and tissue.max() <= 1
    assert not atlas.regions.flags.writeable  # shared through the cache
    assert load_atlas(2) is atlas


def test_ventricles_are_midline_csf(atlas):
    ventricles = atlas.regions == R["ventricles"]
    mni = _mni_of_voxels(atlas, ventricles)
    volume_ml = ventricles.sum() * 8 / 1000
    assert 10 < volume_ml < 40  # MNI152 lateral ventricles: ~18 ml
    assert abs(mni[:, 0].mean()) < 3 and np.all(np.abs(mni[:, 0]) < 40)
    left, right = (mni[:, 0] < 0).sum(), (mni[:, 0] > 0).sum()
    assert abs(left - right) < 0.1 * (left + right)
    assert np.all(atlas.csf[ventricles] >= atlas.gm[ventricles])
    assert np.all(atlas.csf[ventricles] >= atlas.wm[ventricles])
    assert atlas.csf[ventricles].mean() > 0.8


def test_deep_grey_nuclei_are_bilateral_grey_matter(atlas):
    for name, centre in (("basal_ganglia", (20, 3, 3)), ("thalamus", (11, -18, 7))):
        mask = atlas.regions == R[name]
        mni = _mni_of_voxels(atlas, mask)
        for side in (-1, 1):
            half = mni[np.sign(mni[:, 0]) == side]
            assert len(half) > 0.4 * len(mni)
            assert np.linalg.norm(half.mean(axis=0) - np.array(centre) * [side, 1, 1]) < 8
        assert atlas.gm[mask].mean() > 0.45
    for x in (-1, 1):
        assert _region_at(atlas, 25 * x, 2, 0) == "basal_ganglia"  # putamen
        assert _region_at(atlas, 12 * x, 14, 8) == "basal_ganglia"  # caudate head
        assert _region_at(atlas, 11 * x, -18, 7) == "thalamus"
        assert _region_at(atlas, 25 * x, -10, 40) == "centrum_semiovale"
        assert _region_at(atlas, 25 * x, -65, -35) == "infratentorial"  # cerebellum
        assert _region_at(atlas, 50 * x, -20, 40) == "juxtacortical"
    assert _region_at(atlas, 0, -28, -35) == "infratentorial"  # pons


def test_periventricular_band_touches_the_ventricles(atlas):
    band = atlas.regions == R["periventricular"]
    ventricles = atlas.regions == R["ventricles"]
    assert np.all(atlas.ventricle_distance[band] <= PERIVENTRICULAR_MM + 1e-3)
    # Most of the ventricle wall is lined by the band (the rest by the caudate, thalamus, septum).
    wall = ndimage.binary_dilation(ventricles) & ~ventricles & (atlas.regions > 0)
    assert (band & wall).sum() > 0.3 * wall.sum()
    touching = _mni_of_voxels(atlas, band & wall)
    assert (touching[:, 0] < 0).any() and (touching[:, 0] > 0).any()
    deep = np.isin(atlas.regions, [R["centrum_semiovale"], R["deep_wm"]])
    assert np.all(atlas.ventricle_distance[deep] > PERIVENTRICULAR_MM)
    cso = _mni_of_voxels(atlas, atlas.regions == R["centrum_semiovale"])
    roof = _mni_of_voxels(atlas, ventricles)[:, 2].max()
    assert cso[:, 2].min() > roof


def test_regions_in_subject_follows_the_affine(atlas):
    # Identity: the atlas grid itself.
    assert np.array_equal(regions_in_subject(atlas.shape, atlas.affine), atlas.regions)
    # A subject scanned LPS at 3 mm whose world is MNI shifted and scaled.
    world_to_mni = np.diag([1.05, 0.95, 1.0, 1.0])
    world_to_mni[:3, 3] = [4.0, -6.0, 2.0]
    affine = np.array([[-3.0, 0, 0, 80], [0, -3.0, 0, 100], [0, 0, 3.0, -70], [0, 0, 0, 1]])
    shape = (55, 70, 60)
    subject = regions_in_subject(shape, affine, world_to_mni)
    rng = np.random.default_rng(0)
    voxels = rng.integers(0, shape, (200, 3))
    mni = (world_to_mni @ affine @ np.c_[voxels, np.ones(200)].T)[:3]
    assert np.array_equal(subject[tuple(voxels.T)], atlas.sample("regions", mni, order=0))


def test_world_to_mni_from_mask_recovers_scale_and_shift(atlas):
    truth = np.diag([0.92, 1.06, 1.03, 1.0])
    truth[:3, 3] = [-5.0, 12.0, 3.0]
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-100, -120, -90]
    shape = (100, 120, 100)
    voxels = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")).reshape(3, -1)
    mni = (truth @ affine @ np.r_[voxels, np.ones((1, voxels.shape[1]))])[:3]
    mask = atlas.sample("brain", mni, order=0).reshape(shape)
    estimate = world_to_mni_from_mask(mask, affine)
    assert np.allclose(np.diag(estimate)[:3], np.diag(truth)[:3], atol=0.03)
    assert np.allclose(estimate[:3, 3], truth[:3, 3], atol=3.0)


def test_rejects_resolutions_nilearn_lacks():
    with pytest.raises(ValueError, match="1 or 2 mm"):
        load_atlas(3)


def test_derived_atlas_is_cached_on_disk_and_a_bad_cache_is_derived_again(atlas, tmp_path,
                                                                          monkeypatch):
    from csvdnet import atlas as module

    monkeypatch.setenv("CSVDNET_CACHE", str(tmp_path))
    module.load_atlas.cache_clear()
    try:
        derived = module.load_atlas(2)
        (cached,) = tmp_path.glob("mni152-atlas-2mm-*.npz")
        module.load_atlas.cache_clear()
        reread = module.load_atlas(2)
        for name in ("t1", "brain", "regions", "ventricle_distance", "surface_distance"):
            a, b = getattr(derived, name), getattr(reread, name)
            assert a.dtype == b.dtype and np.array_equal(a, b), name
            assert not b.flags.writeable
        np.testing.assert_array_equal(reread.affine, atlas.affine)
        np.testing.assert_array_equal(reread.regions, atlas.regions)

        cached.write_bytes(b"PK\x03\x04 truncated")  # a killed writer's leftovers, say
        module.load_atlas.cache_clear()
        np.testing.assert_array_equal(module.load_atlas(2).regions, atlas.regions)
        with np.load(cached, allow_pickle=False) as again:  # rewritten whole
            np.testing.assert_array_equal(again["regions"], atlas.regions)
    finally:
        module.load_atlas.cache_clear()
