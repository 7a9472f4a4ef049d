"""Library networks by name (pfs.models.library, the catalog's parsing), their registry view (expansion as a percentage,
units), and the one-line refusals: a malformed or unknown name, a network with no prunable group, too small an
image, widths that cut a conv-group."""

from __future__ import annotations

import pytest

from pfs.core.catalog import CatalogError, arch_info, check_arch_fits, is_library_arch, library_parts
from pfs.models import build_model, default_widths, get_spec
from pfs.models.library import check_library_name, timm_cnns, torchvision_cnns
from pfs.models.rebuild import library_cost
from pfs.models.structure import Group, Structure, discover


def test_names_parse_and_fit_every_dataset():
    assert library_parts("torchvision:resnet18") == ("torchvision", "resnet18", False)
    assert library_parts("timm:convnext_atto+all") == ("timm", "convnext_atto", True)
    assert is_library_arch("timm:resnet18") and not is_library_arch("resnet20")
    assert arch_info("torchvision:resnet18").domain == "any"
    for dataset in ("digits", "cifar10", "imagenet", "folder"):
        check_arch_fits("torchvision:resnet18", dataset)


@pytest.mark.parametrize("name", ["torchvision:", "keras:resnet50", "torchvision:res net"])
def test_a_malformed_name_is_refused_saying_how_to_write_one(name):
    with pytest.raises(CatalogError, match="write torchvision:<model> or timm:<model>"):
        library_parts(name)


def test_an_unknown_or_non_cnn_model_is_refused_naming_the_list_command():
    for name in ("torchvision:resnet1800", "torchvision:vit_b_16", "torchvision:swin_t"):
        with pytest.raises(CatalogError, match="python -m pfs list-models lists the valid names"):
            check_library_name(name)
    with pytest.raises(CatalogError, match="timm has no model 'resnet1800'"):
        check_library_name("timm:resnet1800")


def test_lists_hold_cnns_only():
    tv = torchvision_cnns()
    assert {"resnet18", "mobilenet_v3_small", "densenet121", "regnet_y_400mf"} <= set(tv)
    assert not [n for n in tv if n.startswith(("vit_", "swin_", "maxvit"))]
    assert {"resnet18", "efficientnet_b0", "convnext_atto"} <= set(timm_cnns())


def test_expansion_is_a_percentage_of_the_standard_widths_in_whole_units():
    spec = get_spec("torchvision:regnet_x_400mf")
    assert spec.base_expansion == 100 and default_widths("torchvision:regnet_x_400mf") == spec.widths_fn(100)
    wide = spec.widths_fn(150)
    for w, full, unit in zip(wide, spec.widths_fn(100), spec.units, strict=True):
        assert w % unit == 0 and abs(w - 1.5 * full) <= unit / 2
    model = build_model("torchvision:regnet_x_400mf", expansion=150, num_classes=5)
    assert [g.channels for g in model.gates()] == wide


def test_widths_that_cut_a_conv_group_are_refused():
    arch = "torchvision:resnext50_32x4d"
    widths = default_widths(arch)
    widths[0] -= 1
    with pytest.raises(CatalogError, match="must be a multiple of 4"):
        build_model(arch, widths=widths, num_classes=10)


def test_too_small_an_image_is_refused_naming_the_size():
    with pytest.raises(CatalogError, match="torchvision:alexnet cannot take 16x16 images"):
        library_cost("torchvision:alexnet", 16, 10)


def test_a_network_with_no_prunable_group_is_refused_naming_the_way_out(monkeypatch):
    import pfs.models.registry as registry
    import pfs.models.structure as structure

    only_streams = Structure("torchvision:resnet18", (Group("conv1", 64, 1, "residual", ()),), False)
    monkeypatch.setattr(structure, "discover", lambda arch: only_streams)
    registry.library_spec.cache_clear()
    try:
        with pytest.raises(CatalogError, match=r"has no prunable channel group \(its groups are: residual\); try "
                                               r"torchvision:resnet18\+all"):
            get_spec("torchvision:resnet18")
    finally:
        registry.library_spec.cache_clear()


def test_a_group_through_a_bare_parameter_is_not_pruned_even_with_plus_all():
    """ConvNeXt's layer scales are parameters of no layer the rebuild sizes: their residual streams stay whole."""
    every = discover("torchvision:convnext_tiny+all")
    bare = [g for g in every.groups if g.kind == "unsupported"]
    assert len(bare) == 4 and "features.1.0.layer_scale (a parameter outside any layer)" in bare[0].reason
    assert len(every.prunable) == len(discover("torchvision:convnext_tiny").prunable) + 1  # + the stem interface
