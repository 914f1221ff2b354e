"""CycleGAN (Zhu et al., ICCV 2017) between simulated and real X-ray images: the networks
(:mod:`~synthex_lib.adaptation.cyclegan.networks`), training (:mod:`~synthex_lib.adaptation.cyclegan.train`)
and translation of images and datasets (:mod:`~synthex_lib.adaptation.cyclegan.translate`)."""
