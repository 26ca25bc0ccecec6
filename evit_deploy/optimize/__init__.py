"""``evit-deploy optimize``: the fastest export of a model for a device within an accuracy budget, found by
measurement (:mod:`.space` the declared search spaces, :mod:`.exports` the cached candidate exports, :mod:`.search`
the successive-halving screen and the finalists, :mod:`.output` the report and the winner folder, :mod:`.device`
bundles for phones and Jetsons)."""
