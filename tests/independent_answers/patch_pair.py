NEIGHBOR_OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]  # (dr, dc) of labels 0..7


def patch_pair(image, label, patch_size, gap, jitter=0, generator=None):
    """The centre patch of `image` (C, H, W) and its neighbour `label` (0..7, row-major), each (C, p, p)."""
    import torch

    _, H, W = image.shape
    # 1. centre patch: top-left pixel in the middle of the image
    center_row, center_col = (H - patch_size) // 2, (W - patch_size) // 2
    # 2. neighbour on the 3x3 grid, adjacent patches start patch_size + gap apart
    dr, dc = NEIGHBOR_OFFSETS[int(label)]
    stride = patch_size + gap
    neighbor_row, neighbor_col = center_row + dr * stride, center_col + dc * stride

    # 3. jitter: a fresh shift (jr, jc) in [-jitter, jitter] for each patch
    def shift():
        jr, jc = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
        return jr, jc

    jr, jc = shift()
    center_row, center_col = center_row + jr, center_col + jc
    jr, jc = shift()
    neighbor_row, neighbor_col = neighbor_row + jr, neighbor_col + jc

    # 4. cut with slicing
    center = image[:, center_row:center_row + patch_size, center_col:center_col + patch_size]
    neighbor = image[:, neighbor_row:neighbor_row + patch_size, neighbor_col:neighbor_col + patch_size]
    return center, neighbor
