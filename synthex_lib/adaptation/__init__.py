"""Domain adaptation, the baselines the paper compares SyntheX with (Gao et al., Nat. Mach. Intell. 2023,
Methods "Domain adaptation"): CycleGAN (:mod:`~synthex_lib.adaptation.cyclegan`; Zhu et al., ICCV 2017)
translates simulated images to look real before task training; ADDA (:mod:`~synthex_lib.adaptation.adda`;
Tzeng et al., CVPR 2017, as the official SyntheX code) aligns the task network's decoder features of simulated
and real images with a discriminator. Both see only unlabelled real images of the *training* specimens
(:func:`~synthex_lib.adaptation.data.unlabelled_training_images` refuses the held-out one). Sizes per profile:
:mod:`~synthex_lib.adaptation.config`.
"""
