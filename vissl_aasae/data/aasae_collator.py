"""``aasae_collator``: batches ``AASAEViews`` pairs into ``data`` (the model input) and ``original``
(the target images, selected with ``DATA.TRAIN.TARGET_KEY_NAMES: [original]``).

``DATA.TRAIN.COLLATE_FUNCTION_PARAMS.input``: ``augmented`` (AASAE, AAAE: the encoder sees
``x+ ~ A(x)``) or ``original`` (AE, VAE: the encoder sees the target image itself).

Images the data source could not read (VISSL substitutes a gray image and marks them
``data_valid = -1``) are left out of the batch; a batch without any readable image becomes
``{"aasae_skip": True, ...}`` with no images at all, which the data report hook's iterator passes
over (it never reaches the model).  The number of unreadable images travels in
``batch["aasae_invalid"]`` and their data set indices in ``batch["aasae_invalid_idx"]`` to
:class:`~vissl_aasae.hooks.aasae_data_report_hook.AASAEDataReportHook`, which counts them over the
run, stops a run with too many of them and reports them at the end.
"""

import torch
from vissl.data.collators import register_collator

from vissl_aasae.data.aasae_views import ViewPair

INPUT_CHOICES = ("augmented", "original")
SKIP_KEY = "aasae_skip"


@register_collator("aasae_collator")
def aasae_collator(batch, input: str = "augmented"):
    if input not in INPUT_CHOICES:
        raise ValueError(
            f"DATA.TRAIN.COLLATE_FUNCTION_PARAMS.input={input!r} is not supported; allowed: {list(INPUT_CHOICES)}"
        )
    valid = [s for s in batch if s["data_valid"][0] != -1]
    bad = [int(s["data_idx"][0]) for s in batch if s["data_valid"][0] == -1]
    counts = {"aasae_invalid": torch.tensor([len(bad)]), "aasae_invalid_idx": torch.tensor(bad, dtype=torch.int64)}
    if not valid:
        return {SKIP_KEY: True, **counts}
    views, targets = [], []
    for sample in valid:
        pair = sample["data"][0]
        if not isinstance(pair, ViewPair):
            raise TypeError(
                "aasae_collator expects the AASAEViews transform as DATA.TRAIN.TRANSFORMS "
                f"(got a {type(pair).__name__} per sample)"
            )
        views.append(pair[0])
        targets.append(pair[1])
    targets = torch.stack(targets)
    inputs = torch.stack(views) if input == "augmented" else targets
    output = {"data": [inputs], "original": [targets]}
    for key in ("label", "data_valid", "data_idx"):
        output[key] = [torch.tensor([sample[key][0] for sample in valid])]
    output.update(counts)
    return output
