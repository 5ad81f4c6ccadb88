"""TensorBoard summaries under exactly the tags the README documents.

`tf1.summary.scalar('learning_rate', ...)` takes its tag from the op's unique name
(`learning_rate_1` when an op of that name exists) and `tf1.summary.image('image', ...)` adds
`/image/0`, `/image/1`... to it. These ops take the tag as given: scalars through the
ScalarSummary op, images as one TensorBoard image summary per tag holding up to
`max_outputs` images (the format of `tf.summary.image`, shown with a sample slider).
"""
from fcn.compat import tf, tf1
from fcn.visualize import full_palette

IMAGE_PLUGIN = 'images'


def _collect(op):
    tf1.add_to_collection(tf1.GraphKeys.SUMMARIES, op)
    return op


def scalar(tag, value):
    """A scalar summary tagged exactly `tag`, added to the SUMMARIES collection."""
    return _collect(tf.raw_ops.ScalarSummary(tags=tf.constant(tag), values=tf.cast(value, tf.float32),
                                             name='summary_' + tag.replace('/', '_')))


def _image_metadata():
    metadata = tf1.SummaryMetadata()
    metadata.plugin_data.plugin_name = IMAGE_PLUGIN
    return metadata.SerializeToString()


def images(tag, batch, max_outputs=3):
    """Up to `max_outputs` uint8 [B, H, W, C] images as one summary tagged exactly `tag`."""
    batch = tf.convert_to_tensor(batch)
    with tf1.name_scope('summary_' + tag.replace('/', '_')):
        encoded = tf.map_fn(tf.image.encode_png, batch[:max_outputs], fn_output_signature=tf.string)
        shape = tf.shape(batch)
        tensor = tf.concat([[tf.as_string(shape[2]), tf.as_string(shape[1])], encoded], axis=0)
        op = tf.raw_ops.TensorSummaryV2(tag=tf.constant(tag), tensor=tensor,
                                        serialized_summary_metadata=tf.constant(_image_metadata()))
    return _collect(op)


def colorize_tensor(labels, palette, ignore_label=255):
    """TF version of fcn.visualize.colorize for TensorBoard image summaries."""
    table = tf.constant(full_palette(palette, ignore_label))
    return tf.gather(table, tf.clip_by_value(tf.cast(labels, tf.int32), 0, 255))
