"""csvdnet.inference.agreement: the report flags a head that contradicts the rules, not one that guesses."""

from __future__ import annotations

from csvdnet.inference.agreement import head_contradicts

UNIFORM = (0.2,) * 5


def test_only_a_confident_other_total_contradicts():
    sure_of_3 = (0.02, 0.12, 0.06, 0.75, 0.05)
    assert head_contradicts(False, sure_of_3, 0)            # 2 % on the rules' total
    assert head_contradicts(False, sure_of_3, 2)            # 6 %
    assert not head_contradicts(False, sure_of_3, 1)        # 12 %: the head allows it
    assert not head_contradicts(False, UNIFORM, 1)          # a head that knows nothing
    assert not head_contradicts(True, sure_of_3, 3)         # agreement
    assert not head_contradicts(None, sure_of_3, None)      # undecided rules
    # model 2's held-out subjects: the rules' total never got less than 0.13
    assert not head_contradicts(False, (0.10, 0.13, 0.25, 0.26, 0.26), 1)
