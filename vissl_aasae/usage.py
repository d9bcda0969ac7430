"""The launcher's usage text, in a module without imports: ``aasae-train --help`` prints it without
loading torch or VISSL; the launcher prints the same text (``tools/run_distributed_engines.py --help``,
a launch without ``config=``)."""


def train_usage(prog: str) -> str:
    """The usage of the launcher run as ``prog`` (``aasae-train`` or ``run_distributed_engines.py``)."""
    return f"""usage: {prog} config=NAME [config.KEY=VALUE ...] [+config/<group>=<mix-in> ...] [node_id=N]

VISSL's run_distributed_engines with the vissl_aasae plugin loaded in every process. NAME is a Hydra
config, e.g. pretrain/aasae/quickstart (2 epochs on the embedded images, CPU, minutes),
pretrain/aasae/{{cifar10,stl10,imagenet}}, benchmark/aasae/{{linear,knn,semi_supervised}}/...
Mix-ins: +config/pretrain/aasae/variant={{aasae,ae,aaae,vae}}, +config/pretrain/aasae/models=resnet50.
Examples:
  {prog} config=pretrain/aasae/quickstart
  {prog} config=pretrain/aasae/imagenet config.DATA.TRAIN.DATA_PATHS=[/data/train]
  {prog} config=benchmark/aasae/linear/cifar10 \\
      config.MODEL.WEIGHTS_INIT.PARAMS_FILE=<checkpoint> config.DATA.TRAIN.DATA_PATHS=[/data/cifar10] \\
      config.DATA.TEST.DATA_PATHS=[/data/cifar10]
Overrides use Hydra's grammar: lists in brackets, ~ and other special characters quoted.
The console shows a short header, progress and the summary; the full config and VISSL's log go to
<CHECKPOINT.DIR>/log.txt (config.VERBOSE=True prints them too).
Exit status: 0 done, 2 bad input (one line), 3 diverged, 130 Ctrl-C, 143 SIGTERM. See README.md "Usage"."""
