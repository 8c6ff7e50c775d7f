"""The cheap baselines beside the VAE: PCA with the latent size and the mean image, scored like the VAE."""
import torch

from vae_latent.baselines import PCA, MeanImage
from vae_latent.evaluation import evaluate
from vae_latent.vanilla_vae_model import VanillaVAE, to_model_range


def images_on_a_plane(n: int, k: int, seed: int) -> torch.Tensor:
    """(n, 3, 8, 8) images in [0, 1] in one k-dimensional affine subspace (the same for every seed)."""
    basis = torch.linalg.qr(torch.randn(3 * 64, k, generator=torch.Generator().manual_seed(0)))[0].T  # (k, D)
    codes = torch.rand(n, k, generator=torch.Generator().manual_seed(seed)) * 0.2 - 0.1
    return (0.5 + codes @ basis).view(n, 3, 8, 8)


def test_pca_with_k_components_reconstructs_a_k_dimensional_set_exactly():
    train, test = images_on_a_plane(40, 5, seed=1), images_on_a_plane(10, 5, seed=2)
    pca = PCA.fit(train, 5)
    assert pca.k == 5
    torch.testing.assert_close(pca.reconstruct(test), test, atol=1e-5, rtol=0)
    fewer = PCA.fit(train, 2)  # fewer components lose part of the set
    assert (fewer.reconstruct(test) - test).pow(2).mean() > 1e-5


def test_pca_beats_every_other_projection_of_the_same_size_on_its_training_set():
    generator = torch.Generator().manual_seed(1)
    train = torch.rand(30, 3, 8, 8, generator=generator)
    pca = PCA.fit(train, 4)
    error = (pca.reconstruct(train) - train).pow(2).mean()
    for seed in range(5):  # random orthonormal 4-dimensional projections through the same mean
        basis = torch.linalg.qr(torch.randn(192, 4, generator=torch.Generator().manual_seed(seed)))[0].T
        other = PCA(pca.mean, basis)
        assert error < (other.reconstruct(train) - train).pow(2).mean()


def test_components_are_capped_by_the_number_of_training_images():
    assert PCA.fit(torch.rand(3, 3, 8, 8), 10).k == 2


def test_mean_image_predicts_the_training_mean():
    train = torch.rand(6, 3, 8, 8)
    torch.testing.assert_close(MeanImage.fit(train).reconstruct(train[:2]), train.mean(0).expand(2, 3, 8, 8))


def test_every_row_reports_the_mean_of_per_image_psnr():
    torch.manual_seed(0)
    model = VanillaVAE(in_channels=3, latent_dim=4, hidden_dims=[8, 16], image_size=16)
    train = torch.rand(8, 3, 16, 16)
    images = torch.rand(6, 3, 16, 16) * torch.linspace(0.2, 1.0, 6).view(6, 1, 1, 1)  # unequal per-image errors
    baselines = {"pca": PCA.fit(train, 4), "mean_image": MeanImage.fit(train)}
    results = evaluate(model, [{"image": to_model_range(images[:4])}, {"image": to_model_range(images[4:])}],
                       torch.device("cpu"), 1e-4, baselines=baselines)
    for name, baseline in baselines.items():
        per_image_mse = (baseline.reconstruct(images) - images).pow(2).flatten(1).mean(1)
        torch.testing.assert_close(results[f"val/{name}_psnr"], (-10 * per_image_mse.log10()).mean().item())
        torch.testing.assert_close(results[f"val/{name}_mse"], per_image_mse.mean().item())
        assert abs(results[f"val/{name}_psnr"] - (-10 * per_image_mse.mean().log10()).item()) > 1e-3
    assert results["val/baseline_mse"] == min(results["val/pca_mse"], results["val/mean_image_mse"])
