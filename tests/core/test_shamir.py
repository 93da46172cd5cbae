"""Shamir shares in Vault's format: split/combine for every threshold <= parts <= 10, interoperating in both
directions with pyshamir (a port of Vault's own code), and clear errors for bad shares."""

import itertools
import random

import pyshamir
import pytest

from vaultd.core import shamir


def test_field_multiplication_matches_the_bitwise_definition():
    for a in range(256):
        for b in range(0, 256, 7):
            assert shamir.multiply(a, b) == shamir._multiply(a, b)


@pytest.mark.parametrize(("parts", "threshold"), [(n, t) for n in range(2, 11) for t in range(2, n + 1)])
def test_any_threshold_subset_recovers_the_secret(parts, threshold, rng):
    secret = rng.randbytes(32)
    shares = shamir.split(secret, parts, threshold, randbelow=rng.randrange)
    assert all(len(share) == 33 for share in shares)
    assert len({share[-1] for share in shares}) == parts and all(share[-1] != 0 for share in shares)
    subsets = list(itertools.combinations(shares, threshold))
    for subset in rng.sample(subsets, min(len(subsets), 5)):
        assert shamir.combine(list(subset)) == secret


def test_fewer_than_threshold_shares_do_not_recover_the_secret(rng):
    secret = rng.randbytes(32)
    shares = shamir.split(secret, 5, 3, randbelow=rng.randrange)
    assert shamir.combine(shares[:2]) != secret


def test_our_shares_combine_with_pyshamir_and_theirs_with_ours(rng):
    for _ in range(50):
        secret = rng.randbytes(32)
        parts = rng.randint(2, 10)
        threshold = rng.randint(2, parts)
        ours = shamir.split(secret, parts, threshold)
        assert pyshamir.combine(rng.sample(ours, threshold)) == secret
        theirs = pyshamir.split(secret, parts, threshold)
        assert shamir.combine(rng.sample(theirs, threshold)) == secret


@pytest.mark.parametrize(
    ("shares", "message"),
    [
        ([b"\x01\x02"], "at least 2"),
        ([b"\x01\x02", b"\x01\x02\x03"], "equal length"),
        ([b"\x01\x05", b"\x02\x05"], "duplicate"),
    ],
)
def test_bad_shares_are_refused(shares, message):
    with pytest.raises(shamir.ShamirError, match=message):
        shamir.combine(shares)


@pytest.mark.parametrize(("parts", "threshold"), [(1, 1), (3, 4), (256, 2), (5, 1)])
def test_bad_split_parameters_are_refused(parts, threshold):
    with pytest.raises(shamir.ShamirError):
        shamir.split(b"secret", parts, threshold)


@pytest.fixture
def rng():
    return random.Random(7)
