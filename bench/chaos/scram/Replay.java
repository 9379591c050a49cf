// Replays the SCRAM records of a KRaft metadata log segment the way a starting Kafka node does (one
// delta from the empty image, then ScramDelta.apply) and prints how many users the image keeps.
// -Dskip=<user> leaves that user's records out (e.g. the stack's anchor, to see what the broker
// would have started with without it); -Dverbose=1 prints the changes in the order apply() meets them.
//
//   java -cp "$HOME/.cache/eventpipeline/kafka/4.4.0/libs/*" bench/chaos/scram/Replay.java \
//       $EVENTPIPELINE_STATE_DIR/kafka/kafka-logs/__cluster_metadata-0/00000000000000000000.log
import java.io.File;
import java.nio.ByteBuffer;
import java.util.Map;
import org.apache.kafka.common.metadata.RemoveUserScramCredentialRecord;
import org.apache.kafka.common.metadata.UserScramCredentialRecord;
import org.apache.kafka.common.protocol.ByteBufferAccessor;
import org.apache.kafka.common.record.internal.FileLogInputStream;
import org.apache.kafka.common.record.internal.FileRecords;
import org.apache.kafka.image.ScramDelta;
import org.apache.kafka.image.ScramImage;
import org.apache.kafka.metadata.MetadataRecordSerde;
import org.apache.kafka.server.common.ApiMessageAndVersion;

public class Replay {
    public static void main(String[] args) throws Exception {
        String skip = System.getProperty("skip");
        ScramDelta delta = new ScramDelta(ScramImage.EMPTY);
        try (FileRecords segment = FileRecords.open(new File(args[0]), false)) {
            for (FileLogInputStream.FileChannelRecordBatch batch : segment.batches()) {
                if (batch.isControlBatch()) {
                    continue;
                }
                for (org.apache.kafka.common.record.internal.Record record : batch) {
                    ByteBuffer value = record.value();
                    ApiMessageAndVersion message = MetadataRecordSerde.INSTANCE.read(new ByteBufferAccessor(value), value.remaining());
                    if (message.message() instanceof UserScramCredentialRecord upsert && !upsert.name().equals(skip)) {
                        delta.replay(upsert);
                    } else if (message.message() instanceof RemoveUserScramCredentialRecord removal) {
                        delta.replay(removal);
                    }
                }
            }
        }
        if (System.getProperty("verbose") != null) {
            delta.changes().forEach((mechanism, users) -> users.forEach((user, change) ->
                System.out.println(mechanism + " " + user + (change.isPresent() ? " upsert" : " DELETE"))));
        }
        long changed = delta.changes().values().stream().mapToLong(Map::size).sum();
        long deleted = delta.changes().values().stream().flatMap(users -> users.values().stream()).filter(c -> c.isEmpty()).count();
        long kept = delta.apply().mechanisms().values().stream().mapToLong(Map::size).sum();
        System.out.println(changed + " users changed (" + deleted + " deleted), the image keeps " + kept);
    }
}
