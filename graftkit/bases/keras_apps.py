"""The specs of the ImageNet bases of ``keras.applications``."""

from __future__ import annotations

from functools import partial

from graftkit.bases.spec import KERAS_ORIGIN, BaseSpec, WeightFile

SPECS: list[BaseSpec] = []  # filled below, read by graftkit.bases.registry


def _app(constructor: str, include_top: bool, input_shape, **kwargs):
    import keras

    build = getattr(keras.applications, constructor)
    return build(include_top=include_top, weights=None, input_shape=tuple(input_shape), **kwargs)


def _files(names_and_sizes, origin, with_top=False):
    return tuple(WeightFile(name, origin + name, size, with_top) for name, size in names_and_sizes)


def _alpha_suffix(alpha: float) -> str:
    return "" if alpha == 1.0 else f"_{alpha:g}"


def _register_resnets_and_vggs() -> None:
    for family, constructor, size in [
        ("resnet50", "ResNet50", 224),
        ("resnet101", "ResNet101", 224),
        ("resnet152", "ResNet152", 224),
    ]:
        origin = KERAS_ORIGIN + "resnet/"
        SPECS.append(BaseSpec(
            name=family, family="resnet", preprocessing="caffe", default_size=size,
            build=partial(_app, constructor),
            weight_files=_files([(f"{family}_weights_tf_dim_ordering_tf_kernels_notop.h5", None)], origin)
            + _files([(f"{family}_weights_tf_dim_ordering_tf_kernels.h5", 224)], origin, with_top=True),
            layer_groups=(r"^conv1_|^pool1_", r"^conv2_", r"^conv3_", r"^conv4_", r"^conv5_"),
            description=f"{constructor} (He et al. 2015), 'caffe' preprocessing",
        ))
    for family, constructor in [("vgg16", "VGG16"), ("vgg19", "VGG19")]:
        origin = KERAS_ORIGIN + f"{family}/"
        SPECS.append(BaseSpec(
            name=family, family="vgg", preprocessing="caffe", default_size=224,
            build=partial(_app, constructor),
            weight_files=_files([(f"{family}_weights_tf_dim_ordering_tf_kernels_notop.h5", None)], origin)
            + _files([(f"{family}_weights_tf_dim_ordering_tf_kernels.h5", 224)], origin, with_top=True),
            layer_groups=(r"^block1_", r"^block2_", r"^block3_", r"^block4_", r"^block5_"),
            description=f"{constructor} (Simonyan & Zisserman 2014), 'caffe' preprocessing",
        ))


def _register_mobilenets() -> None:
    origin = KERAS_ORIGIN + "mobilenet/"
    for alpha, text in [(0.25, "2_5"), (0.5, "5_0"), (0.75, "7_5"), (1.0, "1_0")]:
        sizes = (224, 192, 160, 128)
        SPECS.append(BaseSpec(
            name="mobilenet" + _alpha_suffix(alpha), family="mobilenet", preprocessing="tf",
            default_size=224, build=partial(_app, "MobileNet", alpha=alpha),
            weight_files=_files([(f"mobilenet_{text}_{s}_tf_no_top.h5", s) for s in sizes], origin)
            + _files([(f"mobilenet_{text}_{s}_tf.h5", s) for s in sizes], origin, with_top=True),
            layer_groups=(r"^conv1", r"^conv_(dw|pw)_[1-5]_", r"^conv_(dw|pw)_([6-9]|10|11)_",
                          r"^conv_(dw|pw)_1[23]_"),
            description=f"MobileNet alpha {alpha} (Howard et al. 2017)",
        ))
    origin = KERAS_ORIGIN + "mobilenet_v2/"
    for alpha in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4):
        sizes = (224, 192, 160, 128, 96) if alpha <= 1.0 else (224,)
        stem = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}"
        SPECS.append(BaseSpec(
            name="mobilenet_v2" + _alpha_suffix(alpha), family="mobilenet_v2", preprocessing="tf",
            default_size=224, build=partial(_app, "MobileNetV2", alpha=alpha),
            weight_files=_files([(f"{stem}_{s}_no_top.h5", s) for s in sizes], origin)
            + _files([(f"{stem}_{s}.h5", s) for s in sizes], origin, with_top=True),
            layer_groups=(r"^Conv1|^bn_Conv1|^expanded_conv_", r"^block_[1-5]_", r"^block_([6-9]|1[0-2])_",
                          r"^block_1[3-6]_|^Conv_1"),
            description=f"MobileNetV2 alpha {alpha} (Sandler et al. 2018)",
        ))
    origin = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/"
    for kind, constructor in [("small", "MobileNetV3Small"), ("large", "MobileNetV3Large")]:
        for alpha in (0.75, 1.0):
            stem = f"weights_mobilenet_v3_{kind}_224_{alpha}_float"
            SPECS.append(BaseSpec(
                name=f"mobilenet_v3_{kind}" + _alpha_suffix(alpha), family="mobilenet_v3",
                preprocessing="none", default_size=224,
                build=partial(_app, constructor, alpha=alpha, include_preprocessing=True),
                weight_files=_files([(f"{stem}_no_top_v2.h5", None)], origin)
                + _files([(f"{stem}.h5", 224)], origin, with_top=True),
                layer_groups=(r"^conv$|^conv_bn|^rescaling", r"^expanded_conv(_[1-5])?_",
                              r"^expanded_conv_([6-9]|1[0-1])_", r"^expanded_conv_1[2-4]_|^conv_1"),
                description=f"MobileNetV3{kind.title()} alpha {alpha} (Howard et al. 2019), rescales inside",
            ))


def _register_efficientnets() -> None:
    origin = "https://storage.googleapis.com/keras-applications/"
    for index, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600)):
        SPECS.append(BaseSpec(
            name=f"efficientnet_b{index}", family="efficientnet", preprocessing="none", default_size=size,
            build=partial(_app, f"EfficientNetB{index}"),
            weight_files=_files([(f"efficientnetb{index}_notop.h5", None)], origin)
            + _files([(f"efficientnetb{index}.h5", size)], origin, with_top=True),
            layer_groups=(r"^stem_|^rescaling|^normalization", r"^block[12]", r"^block[34]", r"^block[56]",
                          r"^block7|^top_"),
            description=f"EfficientNetB{index} (Tan & Le 2019), rescales inside",
        ))


def _register_others() -> None:
    origin = KERAS_ORIGIN
    SPECS.append(BaseSpec(
        name="xception", family="xception", preprocessing="tf", default_size=299, min_size=71,
        build=partial(_app, "Xception"),
        weight_files=_files([("xception_weights_tf_dim_ordering_tf_kernels_notop.h5", None)],
                            origin + "xception/")
        + _files([("xception_weights_tf_dim_ordering_tf_kernels.h5", 299)], origin + "xception/", True),
        layer_groups=(r"^block[12]_", r"^block[3-6]_", r"^block([7-9]|1[0-1])_", r"^block1[2-4]_"),
        description="Xception (Chollet 2017)",
    ))
    SPECS.append(BaseSpec(
        name="inception_v3", family="inception_v3", preprocessing="tf", default_size=299, min_size=75,
        build=partial(_app, "InceptionV3"),
        weight_files=_files([("inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", None)],
                            origin + "inception_v3/")
        + _files([("inception_v3_weights_tf_dim_ordering_tf_kernels.h5", 299)], origin + "inception_v3/", True),
        description="InceptionV3 (Szegedy et al. 2015)",
    ))
    SPECS.append(BaseSpec(
        name="densenet121", family="densenet", preprocessing="torch", default_size=224,
        build=partial(_app, "DenseNet121"),
        weight_files=_files([("densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5", None)],
                            origin + "densenet/")
        + _files([("densenet121_weights_tf_dim_ordering_tf_kernels.h5", 224)], origin + "densenet/", True),
        layer_groups=(r"^conv1|^pool1|^zero_padding", r"^conv2_|^pool2_", r"^conv3_|^pool3_", r"^conv4_|^pool4_",
                      r"^conv5_|^bn$|^relu$"),
        description="DenseNet121 (Huang et al. 2017), 'torch' preprocessing",
    ))


_register_resnets_and_vggs()
_register_mobilenets()
_register_efficientnets()
_register_others()
