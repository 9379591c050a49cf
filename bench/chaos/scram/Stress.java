// Random histories of SCRAM-SHA-512 upserts and deletions (about one third deletions), each replayed
// as one delta from the empty image, as a starting Kafka node does: how many images lose a user.
// -Danchor=<user> bootstraps that user right after the admin, as the local stack does.
//
//   java -cp "$HOME/.cache/eventpipeline/kafka/4.4.0/libs/*" bench/chaos/scram/Stress.java 20000
//   java -Danchor=devenv-scram-anchor-hapvcvv -cp ... bench/chaos/scram/Stress.java 20000
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import org.apache.kafka.common.metadata.RemoveUserScramCredentialRecord;
import org.apache.kafka.common.metadata.UserScramCredentialRecord;
import org.apache.kafka.image.ScramDelta;
import org.apache.kafka.image.ScramImage;

public class Stress {
    private static final byte SCRAM_SHA_512 = 2;

    public static void main(String[] args) {
        String anchor = System.getProperty("anchor");
        int trials = Integer.parseInt(args[0]);
        Random random = new Random(42);
        int withDeletion = 0;
        int wrong = 0;
        for (int trial = 0; trial < trials; trial++) {
            ScramDelta delta = new ScramDelta(ScramImage.EMPTY);
            Set<String> expected = new HashSet<>();
            for (String bootstrap : anchor == null ? List.of("admin") : List.of("admin", anchor)) {
                delta.replay(upsert(bootstrap));
                expected.add(bootstrap);
            }
            List<String> live = new ArrayList<>();
            boolean deleted = false;
            int operations = 1 + random.nextInt(200);
            for (int i = 0; i < operations; i++) {
                if (!live.isEmpty() && random.nextInt(3) == 0) {
                    String user = live.remove(random.nextInt(live.size()));
                    delta.replay(new RemoveUserScramCredentialRecord().setName(user).setMechanism(SCRAM_SHA_512));
                    expected.remove(user);
                    deleted = true;
                } else {
                    String user = "t-" + Integer.toHexString(random.nextInt()) + ".app-" + (char) ('a' + random.nextInt(2));
                    delta.replay(upsert(user));
                    live.add(user);
                    expected.add(user);
                }
            }
            Set<String> kept = new HashSet<>();
            delta.apply().mechanisms().values().forEach(users -> kept.addAll(users.keySet()));
            withDeletion += deleted ? 1 : 0;
            wrong += kept.equals(expected) ? 0 : 1;
        }
        System.out.println("anchor " + anchor + ": " + trials + " histories, " + withDeletion + " with a deletion, "
            + wrong + " images lost users");
    }

    private static UserScramCredentialRecord upsert(String user) {
        return new UserScramCredentialRecord().setName(user).setMechanism(SCRAM_SHA_512)
            .setSalt(new byte[16]).setStoredKey(new byte[64]).setServerKey(new byte[64]).setIterations(8192);
    }
}
