

#: Backbone precisions of a network prior (:class:`~fastmri_diffmask.prior.edm.EDMPrecond`):
#: float32 (the default, reproducible everywhere) or bfloat16 autocast. Here, without torch, so that
#: the command line can offer them without importing it.
PRECISIONS = ("float32", "bfloat16")
