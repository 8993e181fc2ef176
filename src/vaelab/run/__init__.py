"""A run on disk: its folder's layout and status (``folder``), one owner at a time (``guard``), safe checkpoint
reading (``checkpoints``) and going on from where it stopped (``resume``)."""
