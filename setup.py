"""vissl_aasae: the augmentation-augmented stochastic autoencoder (AASAE) as a VISSL plugin.

Install with ``./setup.sh`` (creates .venv with VISSL 0.1.6 on today's stack).  A plain
``pip install .`` into an environment that already has VISSL works too; vissl itself is
not listed in ``install_requires`` because vissl 0.1.6 pins versions that no longer
install on Python 3.11 (setup.sh installs it with ``--no-deps``).
"""

from setuptools import find_namespace_packages, find_packages, setup

packages = find_packages(include=["vissl_aasae", "vissl_aasae.*"])
packages += find_namespace_packages(include=["hydra_plugins.*"])
packages.append("vissl_aasae.configs")

setup(
    name="vissl_aasae",
    version="0.1.0",
    description="AASAE (augmentation-augmented stochastic autoencoder) pretraining for VISSL",
    python_requires=">=3.9",
    packages=packages,
    # the Hydra configs live in configs/ at the repository root and are installed as the
    # data package vissl_aasae.configs (found by hydra_plugins/vissl_aasae_searchpath)
    package_dir={"vissl_aasae.configs": "configs"},
    package_data={
        "vissl_aasae.configs": ["config/**/*.yaml", "config/*/*/*/*/*.yaml"],
        "vissl_aasae": ["data/embedded/*.npz", "data/embedded/*.md"],
    },
    include_package_data=False,
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "hydra-core>=1.3,<1.4",
        "omegaconf>=2.3,<2.4",
        "fvcore",
        "iopath",
        "setuptools<81",
        "numpy",
        "pillow",
    ],
    entry_points={
        "console_scripts": [
            "aasae-train=vissl_aasae.cli:train_main",
            "aasae-eval=vissl_aasae.cli:eval_main",
            "aasae-export=vissl_aasae.cli:export_main",
            "aasae-import=vissl_aasae.cli:import_main",
            "aasae-features=vissl_aasae.cli:features_main",
            "aasae-density=vissl_aasae.cli:density_main",
            "aasae-view-similarity=vissl_aasae.cli:view_similarity_main",
        ]
    },
)
