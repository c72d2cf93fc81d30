import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def linear_probe_accuracy(encoder, train_images, train_labels, test_images, test_labels):
    """Test accuracy of logistic regression on the frozen encoder's standardized features, with
    everything fitted on the labelled training images only."""
    was_training = encoder.training
    device = next(encoder.parameters()).device

    def features(images):
        chunks = []
        for chunk in torch.split(images, 256):
            chunks.append(encoder(chunk.to(device)).flatten(1).cpu())
        return torch.cat(chunks).float().numpy()

    encoder.eval()
    try:
        with torch.no_grad():
            f_train = features(train_images)
            f_test = features(test_images)
    finally:
        encoder.train(was_training)

    y_train = torch.as_tensor(train_labels).cpu().numpy()
    y_test = torch.as_tensor(test_labels).cpu().numpy()

    scaler = StandardScaler().fit(f_train)
    clf = LogisticRegression(max_iter=1000)
    clf.fit(scaler.transform(f_train), y_train)
    return float(clf.score(scaler.transform(f_test), y_test))
