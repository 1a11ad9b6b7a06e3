"""Agreement formulas against values computed by hand."""
import pytest

from annotate.metrics import cohen_kappa, krippendorff_alpha


def test_cohen_kappa_hand_computed():
    # p_o = 3/4; p_e = .5*.25 + .5*.75 = .5; kappa = (.75 - .5) / (1 - .5) = .5
    assert cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5)


def test_cohen_kappa_three_categories():
    # a: a a b b c c, b: a b b b c a -> p_o = 4/6; marginals a:(2,2) b:(2,3) c:(2,1); p_e = (4+6+2)/36 = 1/3
    # kappa = (2/3 - 1/3) / (2/3) = 0.5
    assert cohen_kappa(list("aabbcc"), list("abbbca")) == pytest.approx(0.5)


def test_cohen_kappa_perfect_and_chance_and_undefined():
    assert cohen_kappa(["a", "b", "a"], ["a", "b", "a"]) == pytest.approx(1.0)
    assert cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None  # no variation: undefined
    assert cohen_kappa([], []) is None
    with pytest.raises(ValueError):
        cohen_kappa(["a"], ["a", "b"])


def test_krippendorff_alpha_small_hand_example():
    # coincidences: o_aa = 2, o_ab = o_ba = 1, o_bb = 2; n_a = n_b = 3, n = 6
    # alpha = 1 - (n - 1) * (o_ab + o_ba) / (n_a n_b + n_b n_a) = 1 - 5 * 2 / 18 = 4/9
    assert krippendorff_alpha([["a", "a"], ["a", "b"], ["b", "b"]]) == pytest.approx(4 / 9)


def test_krippendorff_alpha_reference_example_with_missing_values():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", nominal example: alpha = 0.743
    A = [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None]
    B = [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3]
    C = [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None]
    D = [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]
    assert krippendorff_alpha(zip(A, B, C, D)) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_alpha_edge_cases():
    assert krippendorff_alpha([["x", "x"], ["y", "y"]]) == pytest.approx(1.0)
    assert krippendorff_alpha([["x"], ["y"]]) is None  # no item has two values
    assert krippendorff_alpha([["x", "x"], ["x", "x"]]) is None  # no variation
