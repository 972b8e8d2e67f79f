"""Lightning glue (the only subpackage that imports Lightning): data module, LightningModule,
callbacks and the Hydra training task. Import the submodules directly, e.g.
``from atd_dl.lit.train_task import train``."""
